// The core's stages and its top function; see ccstae_centroid.h for the data path.
#include "ccstae_centroid.h"

namespace ccstae_core {

void find_peaks(hls::stream<pixel_t> &pixels, pixel_t frame[SIZE * SIZE], disk_centres_t &centres) {
    // colsum[c]: the sum of column c over the last BOX rows (read back from the frame buffer, which
    // holds the whole frame for measure_disks anyway); hsum: the last BOX column sums of this row.
    ap_uint<W_COL> colsum[SIZE];
    ap_uint<W_BOX> best[N_DISKS];
    bool found[N_DISKS];
#pragma HLS ARRAY_PARTITION variable = best complete
#pragma HLS ARRAY_PARTITION variable = found complete
    for (int k = 0; k < N_DISKS; k++) {
#pragma HLS UNROLL
        found[k] = false;
        best[k] = 0;
    }
    ap_uint<W_BOX> hsum = 0;
rows:
    for (int r = 0; r < SIZE; r++) {
    cols:
        for (int c = 0; c < SIZE; c++) {
#pragma HLS PIPELINE II = 1
            const pixel_t v = pixels.read();
            frame[r * SIZE + c] = v;
            const ap_uint<W_COL> leaving = r >= BOX ? ap_uint<W_COL>(frame[(r - BOX) * SIZE + c]) : ap_uint<W_COL>(0);
            const ap_uint<W_COL> col = (r == 0 ? ap_uint<W_COL>(0) : colsum[c]) + v - leaving;
            colsum[c] = col;
            // hsum holds the columns c-BOX+1 .. c of this row's window (the one leaving first: no underflow)
            const ap_uint<W_BOX> dropped = c >= BOX ? ap_uint<W_BOX>(colsum[c - BOX]) : ap_uint<W_BOX>(0);
            hsum = (c == 0 ? ap_uint<W_BOX>(0) : ap_uint<W_BOX>(hsum - dropped)) + col;
            if (r >= BOX - 1 && c >= BOX - 1) {  // the box centred HALF rows and columns back is complete
                const int cr = r - HALF, cc = c - HALF;
                const int k = SECTORS[cr * SIZE + cc];
                if (k > 0 && (!found[k - 1] || hsum > best[k - 1])) {  // strict: the first largest wins
                    found[k - 1] = true;
                    best[k - 1] = hsum;
                    centres.row[k - 1] = cr;
                    centres.col[k - 1] = cc;
                }
            }
        }
    }
}

void measure_disks(const pixel_t frame[SIZE * SIZE], const disk_centres_t &centres, pos_t px[N_DISKS],
                   pos_t py[N_DISKS]) {
disks:
    for (int k = 0; k < N_DISKS; k++) {
        ap_uint<W_S> s = 0;
        ap_int<W_SX> sx = 0, sy = 0;
        ap_uint<W_NI> ni = 0;
        ap_int<W_XI> xi = 0, yi = 0;
        ap_uint<W_B> b = 0;
        ap_uint<W_NB> nb = 0;
    window:
        for (int m = 0; m < N_OFFSETS; m++) {
#pragma HLS PIPELINE II = 1
            const int r = int(centres.row[k]) + OFFSETS[m][0], c = int(centres.col[k]) + OFFSETS[m][1];
            if (r < 0 || r >= SIZE || c < 0 || c >= SIZE)
                continue;  // off the frame: neither signal nor background
            const pixel_t v = frame[r * SIZE + c];
            if (OFFSETS[m][2] == 1) {
                s += v;
                sx += ap_int<W_SX>(v) * OFFSETS[m][1];
                sy += ap_int<W_SX>(v) * OFFSETS[m][0];
                ni++;
                xi += OFFSETS[m][1];
                yi += OFFSETS[m][0];
            } else {
                b += v;
                nb++;
            }
        }
        if (nb == 0)  // the ring off the frame: no background subtracted
            nb = 1;
        // Background level b / nb per pixel taken off every inner pixel, without dividing by nb:
        // off = (nb sx - b xi) / (nb s - b ni), in 2^-FRAC_BITS pixels, truncated towards zero.
        const ap_int<W_DEN> den = ap_int<W_DEN>(nb * s) - ap_int<W_DEN>(b * ni);
        const ap_int<W_NUM> num_x = ap_int<W_NUM>(nb * sx) - ap_int<W_NUM>(b * xi);
        const ap_int<W_NUM> num_y = ap_int<W_NUM>(nb * sy) - ap_int<W_NUM>(b * yi);
        const ap_int<W_OFF> limit = ap_int<W_OFF>(REACH) << FRAC_BITS;
        ap_int<W_OFF> off_x = 0, off_y = 0;
        if (den > 0) {  // else nothing above the background: the window's centre
            const ap_int<W_SHIFTED> qx = (ap_int<W_SHIFTED>(num_x) << FRAC_BITS) / den;
            const ap_int<W_SHIFTED> qy = (ap_int<W_SHIFTED>(num_y) << FRAC_BITS) / den;
            off_x = qx > limit ? limit : (qx < -limit ? ap_int<W_OFF>(-limit) : ap_int<W_OFF>(qx));
            off_y = qy > limit ? limit : (qy < -limit ? ap_int<W_OFF>(-limit) : ap_int<W_OFF>(qy));
        }
        px[k] = (pos_t(centres.col[k]) << FRAC_BITS) - pos_t(CENTRE_COL_FX) + off_x;
        py[k] = (pos_t(centres.row[k]) << FRAC_BITS) - pos_t(CENTRE_ROW_FX) + off_y;
    }
}

void fit_lattice(const pos_t px[N_DISKS], const pos_t py[N_DISKS], hls::stream<core_axis_t> &out) {
    ap_int<W_ACC> ax[3] = {0, 0, 0}, ay[3] = {0, 0, 0};  // [c, A_.x, A_.y] of x and of y
fit:
    for (int k = 0; k < N_DISKS; k++) {
#pragma HLS PIPELINE II = 1
        for (int j = 0; j < 3; j++) {
#pragma HLS UNROLL
            ax[j] += ap_int<W_PINV>(PINV[j][k]) * px[k];
            ay[j] += ap_int<W_PINV>(PINV[j][k]) * py[k];
        }
    }
    const ap_int<W_ACC> acc[N_OUTPUTS] = {ax[1], ax[2], ay[1], ay[2], ax[0], ay[0]};
    core_axis_t word;
    word.data = 0;
    for (int i = 0; i < N_OUTPUTS; i++) {
#pragma HLS UNROLL
        const out_t v = (acc[i] + (ap_int<W_ACC>(1) << (SHIFT - 1))) >> SHIFT;  // round half up
        word.data.range((i + 1) * W_OUT - 1, i * W_OUT) = v.range(W_OUT - 1, 0);
    }
    word.keep = -1;
    word.strb = -1;
    word.last = 1;
    out.write(word);
}

} // namespace ccstae_core

void ccstae_centroid_top(hls::stream<ccstae_core::pixel_t> &pixels, hls::stream<ccstae_core::core_axis_t> &out) {
#pragma HLS INTERFACE axis port = pixels
#pragma HLS INTERFACE axis port = out
    using namespace ccstae_core;
    // The frame buffer: measure_disks reads windows anywhere on the frame once it has landed.
    static pixel_t frame[SIZE * SIZE];
    disk_centres_t centres;
    pos_t px[N_DISKS], py[N_DISKS];
    find_peaks(pixels, frame, centres);
    measure_disks(frame, centres, px, py);
    fit_lattice(px, py, out);
}
