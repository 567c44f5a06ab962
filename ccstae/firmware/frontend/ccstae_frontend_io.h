// Host-side helpers for the C-simulations (testbench and the ctypes library), not synthesised:
// a pattern of counts -> AXI-Stream words, and the output word -> doubles (exact: ap_fixed
// values are dyadic rationals a double holds).
#ifndef CCSTAE_FRONTEND_IO_H_
#define CCSTAE_FRONTEND_IO_H_

#include "ccstae_frontend.h"

namespace ccstae {

// counts: RAW_HEIGHT x RAW_WIDTH values, row-major, each in [0, 2^COUNT_BITS).
template <class T> void write_frame(const T *counts, hls::stream<counts_axis_t> &stream) {
    const int n_words = RAW_HEIGHT * WORDS_PER_ROW;
    for (int i = 0; i < n_words; i++) {
        counts_axis_t word;
        word.data = 0;
        for (int k = 0; k < PIXELS_PER_CLOCK; k++)
            word.data.range((k + 1) * COUNT_BITS - 1, k * COUNT_BITS) = ap_uint<COUNT_BITS>(counts[i * PIXELS_PER_CLOCK + k]);
        word.keep = -1;
        word.strb = -1;
        word.last = i == n_words - 1;
        stream.write(word);
    }
}

inline void read_params(hls::stream<params_axis_t> &stream, double *out) {
    const params_axis_t word = stream.read();
    for (int k = 0; k < N_OUTPUTS; k++) {
        output_value_t v;
        v.range(OUTPUT_BITS - 1, 0) = word.data.range((k + 1) * OUTPUT_BITS - 1, k * OUTPUT_BITS);
        out[k] = v.to_double();
    }
}

// One pattern through the firmware: what both C-simulations run. shift: its (dy, dx) in binned
// pixels, used when the front end was built with CCSTAE_ORIGIN_SHIFT (ignored otherwise).
template <class T> void run_pattern(const T *counts, double *out, int dy = 0, int dx = 0) {
    hls::stream<counts_axis_t> in("counts");
    hls::stream<params_axis_t> params("params");
    write_frame(counts, in);
#if CCSTAE_ORIGIN_SHIFT
    hls::stream<shift_axis_t> shift("shift");
    shift_axis_t word;
    word.data = 0;
    word.data.range(SHIFT_BITS - 1, 0) = ap_int<SHIFT_BITS>(dy);
    word.data.range(2 * SHIFT_BITS - 1, SHIFT_BITS) = ap_int<SHIFT_BITS>(dx);
    word.keep = -1;
    word.strb = -1;
    word.last = 1;
    shift.write(word);
    ccstae_top(in, shift, params);
#else
    (void)dy, (void)dx;
    ccstae_top(in, params);
#endif
    read_params(params, out);
}

} // namespace ccstae

#endif
