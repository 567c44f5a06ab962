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
        const bool keep = !MASKED || KEEP_MASK[(by - CROP) * ENC_W + (bx - CROP)];
        const ap_uint<SUM_BITS> n = keep ? word.v[g] : ap_uint<SUM_BITS>(0);
        // The LUT saturates: counts past its last entry read that entry.
        const ap_uint<SUM_BITS> index = n >= ap_uint<SUM_BITS>(LUT_DEPTH - 1) ? ap_uint<SUM_BITS>(LUT_DEPTH - 1) : n;
        encoder_input_t px;
        px[0].range(CODE_BITS - 1, 0) = INPUT_LUT[index];
        pixels.write(px);
    }
}

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

void ccstae_top(hls::stream<ccstae::counts_axis_t> &counts, hls::stream<ccstae::params_axis_t> &params) {
#pragma HLS INTERFACE axis port = counts
#pragma HLS INTERFACE axis port = params
#pragma HLS DATAFLOW
    using namespace ccstae;
    // One binned row of words absorbs the burst of the last raw row of each bin.
    hls::stream<binned_word_t> binned("binned");
#pragma HLS STREAM variable = binned depth = BINNED_FIFO_DEPTH
    hls::stream<encoder_input_t> pixels("pixels");
    hls::stream<encoder_output_t> raw_params("raw_params");
    bin_frame(counts, binned);
    crop_mask_lut(binned, pixels);
    myproject(pixels, raw_params);
    pack_params(raw_params, params);
}
