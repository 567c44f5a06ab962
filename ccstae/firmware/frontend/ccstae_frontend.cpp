// The front end's stages and its top function; see ccstae_frontend.h for the data path.
#include "ccstae_frontend.h"

namespace ccstae {

void bin_frame(hls::stream<counts_axis_t> &counts, hls::stream<binned_word_t> &binned) {
    // The line buffer: partial sums of the binned row under construction, one per binned column,
    // banked so that one word's GROUPS columns are read and written in the same clock.
    ap_uint<SUM_BITS> line[BIN_W];
#pragma HLS ARRAY_PARTITION variable = line cyclic factor = GROUPS
    ap_uint<SUM_BITS> part[GROUPS];  // horizontal partial sums while a bin spans several words
#pragma HLS ARRAY_PARTITION variable = part complete
#if CCSTAE_BAD_PIXELS
#pragma HLS ARRAY_PARTITION variable = RAW_KEEP cyclic factor = PIXELS_PER_CLOCK
#endif
rows:
    for (int y = 0; y < RAW_HEIGHT; y++) {
    words:
        for (int w = 0; w < WORDS_PER_ROW; w++) {
#pragma HLS PIPELINE II = 1
            const counts_axis_t word = counts.read();
            const bool bin_done_x = w % WORDS_PER_BIN == WORDS_PER_BIN - 1;
            const bool bin_done_y = y % BINNING == BINNING - 1;
            binned_word_t out;
        groups:
            for (int g = 0; g < GROUPS; g++) {
#pragma HLS UNROLL
                ap_uint<SUM_BITS> s = 0;
                for (int k = 0; k < PX_PER_GROUP; k++) {
#pragma HLS UNROLL
                    const int px = g * PX_PER_GROUP + k;
#if CCSTAE_BAD_PIXELS
                    // A bad pixel reads 0 (no division, no neighbours: docs/frontend.md).
                    if (RAW_KEEP[y * RAW_WIDTH + w * PIXELS_PER_CLOCK + px])
#endif
                    s += word.data.range((px + 1) * COUNT_BITS - 1, px * COUNT_BITS);
                }
                const ap_uint<SUM_BITS> h = (w % WORDS_PER_BIN == 0 ? ap_uint<SUM_BITS>(0) : part[g]) + s;
                part[g] = h;
                if (bin_done_x) {
                    const int bx = (w / WORDS_PER_BIN) * GROUPS + g;
                    const ap_uint<SUM_BITS> t = (y % BINNING == 0 ? ap_uint<SUM_BITS>(0) : line[bx]) + h;
                    line[bx] = t;
                    out.v[g] = t;
                }
            }
            if (bin_done_x && bin_done_y)
                binned.write(out);
        }
    }
}

// One encoder pixel (ey, ex) of binned count n: zeroed where the mask hides it, then the LUT.
static inline encoder_input_t mask_lut(ap_uint<SUM_BITS> n, int ey, int ex) {
#pragma HLS INLINE
    if (MASKED && !KEEP_MASK[ey * ENC_W + ex])
        n = 0;
    // The LUT saturates: counts past its last entry read that entry.
    const ap_uint<SUM_BITS> index = n >= ap_uint<SUM_BITS>(LUT_DEPTH - 1) ? ap_uint<SUM_BITS>(LUT_DEPTH - 1) : n;
    encoder_input_t px;
    px[0].range(CODE_BITS - 1, 0) = INPUT_LUT[index];
    return px;
}

void crop_mask_lut(hls::stream<binned_word_t> &binned, hls::stream<encoder_input_t> &pixels) {
    binned_word_t word;
pixels_loop:
    for (int i = 0; i < BIN_H * BIN_W; i++) {
#pragma HLS PIPELINE II = 1
        const int g = i % GROUPS;
        if (g == 0)
            word = binned.read();
        const int by = i / BIN_W, bx = i % BIN_W;
        if (by < CROP || by >= BIN_H - CROP || bx < CROP || bx >= BIN_W - CROP)
            continue;  // the crop: dropped, never streamed to the encoder
        pixels.write(mask_lut(word.v[g], by - CROP, bx - CROP));
    }
}

#if CCSTAE_ORIGIN_SHIFT
void store_binned(hls::stream<binned_word_t> &binned, ap_uint<SUM_BITS> frame[BIN_H * BIN_W]) {
words_loop:
    for (int i = 0; i < BIN_H * BIN_W / GROUPS; i++) {
#pragma HLS PIPELINE II = 1
        const binned_word_t word = binned.read();
        for (int g = 0; g < GROUPS; g++) {
#pragma HLS UNROLL
            frame[i * GROUPS + g] = word.v[g];
        }
    }
}

void window_mask_lut(ap_uint<SUM_BITS> frame[BIN_H * BIN_W], hls::stream<shift_axis_t> &shift,
                     hls::stream<encoder_input_t> &pixels) {
    // The encoder pixel (ey, ex) is the binned pixel (CROP + dy + ey, CROP + dx + ex): an address
    // offset. A window past the frame's edge reads 0 there (a detector has no electrons outside it).
    const shift_axis_t word = shift.read();
    const int dy = ap_int<SHIFT_BITS>(word.data.range(SHIFT_BITS - 1, 0));
    const int dx = ap_int<SHIFT_BITS>(word.data.range(2 * SHIFT_BITS - 1, SHIFT_BITS));
pixels_loop:
    for (int i = 0; i < ENC_H * ENC_W; i++) {
#pragma HLS PIPELINE II = 1
        const int ey = i / ENC_W, ex = i % ENC_W;
        const int y = CROP + dy + ey, x = CROP + dx + ex;
        const bool inside = y >= 0 && y < BIN_H && x >= 0 && x < BIN_W;
        const ap_uint<SUM_BITS> n = inside ? frame[inside ? y * BIN_W + x : 0] : ap_uint<SUM_BITS>(0);
        pixels.write(mask_lut(n, ey, ex));
    }
}
#endif

void pack_params(hls::stream<encoder_output_t> &raw, hls::stream<params_axis_t> &params) {
    const encoder_output_t r = raw.read();
    params_axis_t word;
    word.data = 0;
    for (int k = 0; k < N_OUTPUTS; k++) {
#pragma HLS UNROLL
        word.data.range((k + 1) * OUTPUT_BITS - 1, k * OUTPUT_BITS) = r[k].range(OUTPUT_BITS - 1, 0);
    }
    word.keep = -1;
    word.strb = -1;
    word.last = 1;
    params.write(word);
}

} // namespace ccstae

void ccstae_top(hls::stream<ccstae::counts_axis_t> &counts,
#if CCSTAE_ORIGIN_SHIFT
                hls::stream<ccstae::shift_axis_t> &shift,
#endif
                hls::stream<ccstae::params_axis_t> &params) {
#pragma HLS INTERFACE axis port = counts
#if CCSTAE_ORIGIN_SHIFT
#pragma HLS INTERFACE axis port = shift
#endif
#pragma HLS INTERFACE axis port = params
#pragma HLS DATAFLOW
    using namespace ccstae;
    // One binned row of words absorbs the burst of the last raw row of each bin.
    hls::stream<binned_word_t> binned("binned");
#pragma HLS STREAM variable = binned depth = BINNED_FIFO_DEPTH
    hls::stream<encoder_input_t> pixels("pixels");
    hls::stream<encoder_output_t> raw_params("raw_params");
    bin_frame(counts, binned);
#if CCSTAE_ORIGIN_SHIFT
    // A whole binned frame (a ping-pong buffer under DATAFLOW): the window may start anywhere.
    ap_uint<SUM_BITS> frame[BIN_H * BIN_W];
    // GROUPS banks: one word's binned pixels are written in the same clock.
#pragma HLS ARRAY_PARTITION variable = frame cyclic factor = GROUPS
    store_binned(binned, frame);
    window_mask_lut(frame, shift, pixels);
#else
    crop_mask_lut(binned, pixels);
#endif
    myproject(pixels, raw_params);
    pack_params(raw_params, params);
}
