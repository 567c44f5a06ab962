// C entry points of the front end + encoder, for firmware/frontend.py (ctypes): C-simulation 1.
#include "ccstae_frontend_io.h"

extern "C" {

int ccstae_frontend_n_outputs() { return ccstae::N_OUTPUTS; }

int ccstae_frontend_pattern_pixels() { return ccstae::RAW_HEIGHT * ccstae::RAW_WIDTH; }

// counts: n_patterns x RAW_HEIGHT x RAW_WIDTH, row-major; out: n_patterns x N_OUTPUTS.
void ccstae_frontend_predict(const unsigned int *counts, int n_patterns, double *out) {
    for (int p = 0; p < n_patterns; p++)
        ccstae::run_pattern(counts + (long)p * ccstae::RAW_HEIGHT * ccstae::RAW_WIDTH, out + (long)p * ccstae::N_OUTPUTS);
}
}
