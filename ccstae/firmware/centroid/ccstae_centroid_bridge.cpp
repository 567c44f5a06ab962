// C entry points of the centroid core, for firmware/centroid_csim.py (ctypes): C-simulation 1.
#include "ccstae_centroid_io.h"

extern "C" {

int ccstae_centroid_n_outputs() { return ccstae_core::N_OUTPUTS; }

int ccstae_centroid_frame_pixels() { return ccstae_core::SIZE * ccstae_core::SIZE; }

// binned: n_frames x SIZE x SIZE, row-major; out: n_frames x N_OUTPUTS.
void ccstae_centroid_run(const unsigned int *binned, int n_frames, long long *out) {
    const long pixels = (long)ccstae_core::SIZE * ccstae_core::SIZE;
    for (int p = 0; p < n_frames; p++)
        ccstae_core::run_frame(binned + p * pixels, out + (long)p * ccstae_core::N_OUTPUTS);
}
}
