// Detector-side front end of the CC-ST-AE encoder: raw counts in, the 4 raw lattice
// parameters out, one pattern per call of ccstae_top (model/preprocess.py's integer path, in HLS):
//
//   counts (AXI-Stream, PIXELS_PER_CLOCK x COUNT_BITS per word, row-major, TLAST on the last word)
//     -> bin_frame:      b x b sums, one line buffer of partial sums of the binned row
//                        (with CCSTAE_BAD_PIXELS: the session's bad raw pixels read 0 first)
//     -> crop_mask_lut:  drop CROP binned pixels at each edge, zero the masked ones, LUT (ROM)
//                        onto the encoder's input grid, one pixel per clock
//        or, with CCSTAE_ORIGIN_SHIFT (a session's descan, docs/frontend.md):
//        store_binned -> window_mask_lut: the binned frame in a ping-pong buffer, read through
//                        a window moved by the pattern's (dy, dx) sideband word (binned pixels;
//                        outside the frame reads 0), then the same mask and LUT
//     -> myproject:      the hls4ml encoder (io_stream)
//     -> pack_params:    the 4 outputs packed into one AXI-Stream word (TLAST set)
//
// Every run-specific number (sizes, widths, the LUT and mask contents) comes from
// frontend_params.h, which firmware/frontend.py generates; this file is the reviewed logic.
#ifndef CCSTAE_FRONTEND_H_
#define CCSTAE_FRONTEND_H_

#include "ap_int.h"
#include "hls_stream.h"

#include "ccstae_axis.h"
#include "frontend_params.h"
#include "myproject.h"

namespace ccstae {

// Bits to hold the values 0 .. x-1 (ceil(log2(x)), 0 for x <= 1).
constexpr int clog2(unsigned long long x) { return x <= 1 ? 0 : 1 + clog2((x + 1) / 2); }

// ---------------------------------------------------------------- geometry, from the parameters
constexpr int BIN_H = RAW_HEIGHT / BINNING, BIN_W = RAW_WIDTH / BINNING;
constexpr int ENC_H = BIN_H - 2 * CROP, ENC_W = BIN_W - 2 * CROP;
constexpr int WORDS_PER_ROW = RAW_WIDTH / PIXELS_PER_CLOCK;
// A word holds GROUPS horizontal pieces of PX_PER_GROUP pixels, each inside one bin; a bin
// spans WORDS_PER_BIN words of a row (1 when a word holds whole bins).
constexpr int PX_PER_GROUP = PIXELS_PER_CLOCK < BINNING ? PIXELS_PER_CLOCK : BINNING;
constexpr int GROUPS = PIXELS_PER_CLOCK / PX_PER_GROUP;
constexpr int WORDS_PER_BIN = BINNING / PX_PER_GROUP;
constexpr int SUM_BITS = COUNT_BITS + clog2((unsigned long long)BINNING * BINNING);  // holds b^2 (2^bits - 1)
constexpr int BINNED_FIFO_DEPTH = BIN_W / GROUPS;  // one binned row of words: the last raw row's burst

static_assert(RAW_HEIGHT % BINNING == 0 && RAW_WIDTH % BINNING == 0, "binning must divide the pattern");
static_assert(RAW_WIDTH % PIXELS_PER_CLOCK == 0, "pixels per clock must divide the pattern width");
static_assert(PIXELS_PER_CLOCK % BINNING == 0 || BINNING % PIXELS_PER_CLOCK == 0,
              "pixels per clock must be a multiple or a divisor of the binning");
static_assert(ENC_H > 0 && ENC_W > 0, "the crop leaves no pixels");
static_assert(LUT_DEPTH >= 1 && LUT_DEPTH <= (1 << 20), "LUT depth out of range");

// ---------------------------------------------------------------- stream types
typedef ap_axiu<PIXELS_PER_CLOCK * COUNT_BITS, 0, 0, 0> counts_axis_t;

struct binned_word_t {  // the GROUPS binned counts a word of the last raw row of a bin completes
    ap_uint<SUM_BITS> v[GROUPS];
};

// The encoder's stream types, read off myproject's signature (they carry the input layer's name).
template <class F> struct encoder_io;
template <class I, class O> struct encoder_io<void(hls::stream<I> &, hls::stream<O> &)> {
    typedef I input_t;
    typedef O output_t;
};
typedef encoder_io<decltype(myproject)>::input_t encoder_input_t;
typedef encoder_io<decltype(myproject)>::output_t encoder_output_t;
typedef typename encoder_input_t::value_type input_pixel_t;
typedef typename encoder_output_t::value_type output_value_t;

constexpr int N_OUTPUTS = encoder_output_t::size;
constexpr int OUTPUT_BITS = output_value_t::width;
constexpr int PARAMS_BITS = (N_OUTPUTS * OUTPUT_BITS + 7) / 8 * 8;  // whole bytes on the AXI-Stream
typedef ap_axiu<PARAMS_BITS, 0, 0, 0> params_axis_t;

static_assert(encoder_input_t::size == 1, "the encoder takes one channel per pixel");
static_assert(input_pixel_t::width == CODE_BITS, "the LUT codes must be the encoder's input word");

#if CCSTAE_ORIGIN_SHIFT
// The origin sideband: one word per pattern, before or beside its counts: the window's shift in
// binned pixels, two's complement, dy (rows, Qx) in bits 15:0 and dx (columns, Qy) in bits 31:16.
constexpr int SHIFT_BITS = 16;
typedef ap_axiu<2 * SHIFT_BITS, 0, 0, 0> shift_axis_t;
static_assert(BIN_W % GROUPS == 0, "a binned row must be whole words");
#endif

// ---------------------------------------------------------------- the stages
void bin_frame(hls::stream<counts_axis_t> &counts, hls::stream<binned_word_t> &binned);
void crop_mask_lut(hls::stream<binned_word_t> &binned, hls::stream<encoder_input_t> &pixels);
#if CCSTAE_ORIGIN_SHIFT
void store_binned(hls::stream<binned_word_t> &binned, ap_uint<SUM_BITS> frame[BIN_H * BIN_W]);
void window_mask_lut(ap_uint<SUM_BITS> frame[BIN_H * BIN_W], hls::stream<shift_axis_t> &shift,
                     hls::stream<encoder_input_t> &pixels);
#endif
void pack_params(hls::stream<encoder_output_t> &raw, hls::stream<params_axis_t> &params);

} // namespace ccstae

// The top function: one pattern of raw counts in (and, with CCSTAE_ORIGIN_SHIFT, its shift word),
// one word of raw lattice parameters out.
void ccstae_top(hls::stream<ccstae::counts_axis_t> &counts,
#if CCSTAE_ORIGIN_SHIFT
                hls::stream<ccstae::shift_axis_t> &shift,
#endif
                hls::stream<ccstae::params_axis_t> &params);

#endif
