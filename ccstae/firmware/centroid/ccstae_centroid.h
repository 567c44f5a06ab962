// The classical strain core (issue 23): windowed Bragg-disk centroids and a fixed least-squares
// lattice fit, one pattern per call of ccstae_centroid_top, in integers (ccstae/firmware/centroid.py
// is its Python reference, bit for bit):
//
//   binned counts (the front end's binned, cropped, masked stream, before the LUT; one pixel a clock)
//     -> find_peaks:    frame buffer + BOX x BOX sums (a line of column sums); in each disk's search
//                       sector (SECTORS ROM) the first largest sum is the disk's window centre
//     -> measure_disks: per disk, inner-window sums S, SX, SY and a background ring B; the
//                       background-subtracted centroid offset, one divide per axis
//     -> fit_lattice:   [c, A] of p = c + A g by the precomputed pseudo-inverse PINV
//     -> one AXI-Stream word: A_xx, A_xy, A_yx, A_yy, c_x, c_y in 2^-OUT_FRAC (TLAST set)
//
// Every run-specific number comes from centroid_params.h (firmware/centroid_csim.py writes it);
// every width below is derived from SUM_BITS and the window, so saturated counts cannot overflow.
#ifndef CCSTAE_CENTROID_H_
#define CCSTAE_CENTROID_H_

#include "ap_int.h"
#include "hls_stream.h"

#include "ccstae_axis.h"
#include "centroid_params.h"

namespace ccstae_core {

// Bits to hold the values 0 .. x-1 (ceil(log2(x)), 0 for x <= 1).
constexpr int clog2(unsigned long long x) { return x <= 1 ? 0 : 1 + clog2((x + 1) / 2); }
constexpr int max2(int a, int b) { return a > b ? a : b; }
constexpr long long abs_ll(long long v) { return v < 0 ? -v : v; }
constexpr int bit_length(unsigned long long v) { return v == 0 ? 0 : 1 + bit_length(v >> 1); }
constexpr long long max_ll(long long a, long long b) { return a > b ? a : b; }
constexpr long long max_abs_pinv(int i = 0) {
    return i == 3 * N_DISKS ? 0 : max_ll(abs_ll(PINV[i / N_DISKS][i % N_DISKS]), max_abs_pinv(i + 1));
}

// ---------------------------------------------------------------- widths (centroid.py's widths())
constexpr int HALF = BOX / 2;
constexpr int W_BOX = SUM_BITS + clog2(BOX * BOX + 1);          // a box sum
constexpr int W_COL = SUM_BITS + clog2(BOX + 1);                // a column of the box
constexpr int W_S = SUM_BITS + clog2(N_INNER + 1);              // sum n over the inner window
constexpr int W_B = SUM_BITS + clog2(N_RING + 1);               // sum n over the ring
constexpr int W_SX = SUM_BITS + clog2(N_INNER * REACH + 1) + 1; // sum n dx (signed)
constexpr int W_XI = clog2(N_INNER * REACH + 1) + 1;            // sum dx (signed)
constexpr int W_NI = clog2(N_INNER + 1), W_NB = clog2(N_RING + 1);
constexpr int W_NUM = max2(W_NB + W_SX, W_B + W_XI) + 1;
constexpr int W_DEN = max2(W_NB + W_S, W_B + W_NI) + 2;
constexpr int W_SHIFTED = W_NUM + FRAC_BITS;
constexpr int W_OFF = clog2(REACH + 1) + FRAC_BITS + 1;         // clamped to the window
constexpr int W_POS = clog2(SIZE + REACH + 1) + FRAC_BITS + 2;
constexpr int W_PINV = bit_length(max_abs_pinv()) + 1;
constexpr int W_ACC = W_POS + W_PINV + clog2(N_DISKS);
constexpr int SHIFT = FRAC_BITS + PINV_BITS - OUT_FRAC;
constexpr int W_OUT = W_ACC - SHIFT + 1;
constexpr int N_OUTPUTS = 6;
constexpr int OUT_WORD_BITS = (N_OUTPUTS * W_OUT + 7) / 8 * 8;  // whole bytes on the AXI-Stream

static_assert(BOX % 2 == 1 && BOX <= SIZE, "the box must be odd and fit the frame");
static_assert(N_DISKS >= 3, "the lattice fit needs at least 3 disks");
static_assert(SHIFT >= 1, "the outputs must be coarser than the fit's grid");
static_assert(W_SHIFTED <= 63 && W_ACC <= 63, "an intermediate wider than 63 bits");

// ---------------------------------------------------------------- types
typedef ap_uint<SUM_BITS> pixel_t;  // a binned count
typedef ap_uint<clog2(SIZE)> coord_t;
typedef ap_int<W_POS> pos_t;
typedef ap_int<W_OUT> out_t;
typedef ap_axiu<OUT_WORD_BITS, 0, 0, 0> core_axis_t;

struct disk_centres_t {  // each disk's window centre on the frame
    coord_t row[N_DISKS], col[N_DISKS];
};

// ---------------------------------------------------------------- the stages
void find_peaks(hls::stream<pixel_t> &pixels, pixel_t frame[SIZE * SIZE], disk_centres_t &centres);
void measure_disks(const pixel_t frame[SIZE * SIZE], const disk_centres_t &centres, pos_t px[N_DISKS],
                   pos_t py[N_DISKS]);
void fit_lattice(const pos_t px[N_DISKS], const pos_t py[N_DISKS], hls::stream<core_axis_t> &out);

} // namespace ccstae_core

// The top function: one frame of binned counts in, one word of lattice parameters out.
void ccstae_centroid_top(hls::stream<ccstae_core::pixel_t> &pixels, hls::stream<ccstae_core::core_axis_t> &out);

#endif
