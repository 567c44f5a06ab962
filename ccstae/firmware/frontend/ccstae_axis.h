// AXI-Stream word types. Vitis HLS ships ap_axi_sdata.h; hls4ml's ap_types (what the project's
// g++ C-simulation builds with) does not, so a minimal stand-in with the same member names
// (data, keep, strb, last) takes its place there. Synthesis always uses the vendor's.
#ifndef CCSTAE_AXIS_H_
#define CCSTAE_AXIS_H_

#include "ap_int.h"

#if defined(__SYNTHESIS__) || __has_include(<ap_axi_sdata.h>)
#include <ap_axi_sdata.h>
#else
template <int D, int U, int TI, int TD> struct ap_axiu {
    ap_uint<D> data;
    ap_uint<(D + 7) / 8> keep;
    ap_uint<(D + 7) / 8> strb;
    ap_uint<1> last;
};
#endif

#endif
