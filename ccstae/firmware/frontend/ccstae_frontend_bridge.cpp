// C entry points of the front end + encoder, for firmware/frontend.py (ctypes): C-simulation 1.
#include "ccstae_frontend_io.h"

extern "C" {

int ccstae_frontend_n_outputs() { return ccstae::N_OUTPUTS; }

int ccstae_frontend_pattern_pixels() { return ccstae::RAW_HEIGHT * ccstae::RAW_WIDTH; }

// counts: n_patterns x RAW_HEIGHT x RAW_WIDTH, row-major; out: n_patterns x N_OUTPUTS.
// shifts: n_patterns x 2 (dy, dx) in binned pixels, or NULL (all 0); read only when the front end
// was built with CCSTAE_ORIGIN_SHIFT (ccstae_frontend_origin_shift() says so).
void ccstae_frontend_predict(const unsigned int *counts, const int *shifts, int n_patterns, double *out) {
    for (int p = 0; p < n_patterns; p++)
        ccstae::run_pattern(counts + (long)p * ccstae::RAW_HEIGHT * ccstae::RAW_WIDTH, out + (long)p * ccstae::N_OUTPUTS,
                            shifts ? shifts[2 * p] : 0, shifts ? shifts[2 * p + 1] : 0);
}

int ccstae_frontend_origin_shift() { return CCSTAE_ORIGIN_SHIFT; }
}
