// Host-side helpers for the core's C-simulations (testbench and the ctypes library), not synthesised.
#ifndef CCSTAE_CENTROID_IO_H_
#define CCSTAE_CENTROID_IO_H_

#include "ccstae_centroid.h"

namespace ccstae_core {

// One frame of binned counts (SIZE x SIZE, row-major) through the core; out: the N_OUTPUTS raw
// integers (units of 2^-OUT_FRAC).
template <class T> void run_frame(const T *binned, long long *out) {
    hls::stream<pixel_t> in("binned");
    hls::stream<core_axis_t> words("core_out");
    for (int i = 0; i < SIZE * SIZE; i++)
        in.write(pixel_t(binned[i]));
    ccstae_centroid_top(in, words);
    const core_axis_t word = words.read();
    for (int i = 0; i < N_OUTPUTS; i++) {
        out_t v;
        v.range(W_OUT - 1, 0) = word.data.range((i + 1) * W_OUT - 1, i * W_OUT);
        out[i] = v.to_int64();
    }
}

} // namespace ccstae_core

#endif
