// Testbench of ccstae_centroid_top (what Vitis HLS C-simulation runs; builds with plain g++ too):
// reads binned counts from tb_data/tb_centroid_binned.dat and the expected raw outputs (the Python
// integer reference) from tb_data/tb_centroid_outputs.dat, one frame per line; writes
// tb_data/centroid_csim_results.log and fails on any output that differs.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "ccstae_centroid_io.h"

int main() {
    std::ifstream fin("tb_data/tb_centroid_binned.dat"), fex("tb_data/tb_centroid_outputs.dat");
    if (!fin.is_open() || !fex.is_open()) {
        std::cerr << "ERROR: tb_data/tb_centroid_binned.dat or tb_centroid_outputs.dat missing" << std::endl;
        return 2;
    }
    FILE *log = std::fopen("tb_data/centroid_csim_results.log", "w");
    const int n_pixels = ccstae_core::SIZE * ccstae_core::SIZE;
    std::string bline, eline;
    long frames = 0, mismatches = 0;
    while (std::getline(fin, bline) && std::getline(fex, eline)) {
        std::vector<unsigned long> binned;
        std::istringstream bs(bline);
        for (unsigned long v; bs >> v;)
            binned.push_back(v);
        std::vector<long long> expected;
        std::istringstream es(eline);
        for (long long v; es >> v;)
            expected.push_back(v);
        if ((int)binned.size() != n_pixels || (int)expected.size() != ccstae_core::N_OUTPUTS) {
            std::cerr << "ERROR: frame " << frames << ": " << binned.size() << " counts (want " << n_pixels << "), "
                      << expected.size() << " outputs (want " << ccstae_core::N_OUTPUTS << ")" << std::endl;
            return 2;
        }
        long long out[ccstae_core::N_OUTPUTS];
        ccstae_core::run_frame(binned.data(), out);
        for (int k = 0; k < ccstae_core::N_OUTPUTS; k++) {
            std::fprintf(log, "%lld%s", out[k], k + 1 < ccstae_core::N_OUTPUTS ? " " : "\n");
            mismatches += out[k] != expected[k];
        }
        frames++;
    }
    std::fclose(log);
    std::cout << "ccstae_centroid_top: " << frames << " frames, " << mismatches << " outputs differ from the expected"
              << std::endl;
    return mismatches ? 1 : 0;
}
