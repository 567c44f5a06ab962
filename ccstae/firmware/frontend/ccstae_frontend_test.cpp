// Testbench of ccstae_top (what Vitis HLS C-simulation runs; builds with plain g++ too):
// reads raw counts from tb_data/tb_frontend_counts.dat and the expected raw outputs (the Python
// integer front end + the QKeras encoder) from tb_data/tb_frontend_predictions.dat, one pattern
// per line; with CCSTAE_ORIGIN_SHIFT each pattern's shift "dy dx" from tb_data/tb_frontend_shifts.dat;
// writes tb_data/frontend_csim_results.log and fails on any output that differs.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "ccstae_frontend_io.h"

int main() {
    std::ifstream fin("tb_data/tb_frontend_counts.dat"), fpr("tb_data/tb_frontend_predictions.dat");
    if (!fin.is_open() || !fpr.is_open()) {
        std::cerr << "ERROR: tb_data/tb_frontend_counts.dat or tb_frontend_predictions.dat missing" << std::endl;
        return 2;
    }
#if CCSTAE_ORIGIN_SHIFT
    std::ifstream fsh("tb_data/tb_frontend_shifts.dat");
    if (!fsh.is_open()) {
        std::cerr << "ERROR: tb_data/tb_frontend_shifts.dat missing (the front end takes an origin shift)" << std::endl;
        return 2;
    }
#endif
    FILE *log = std::fopen("tb_data/frontend_csim_results.log", "w");
    const int n_pixels = ccstae::RAW_HEIGHT * ccstae::RAW_WIDTH;
    std::string cline, pline;
    long patterns = 0, mismatches = 0;
    while (std::getline(fin, cline) && std::getline(fpr, pline)) {
        std::vector<unsigned long> counts;
        std::istringstream cs(cline);
        for (unsigned long v; cs >> v;)
            counts.push_back(v);
        std::vector<double> expected;
        std::istringstream ps(pline);
        for (double v; ps >> v;)
            expected.push_back(v);
        if ((int)counts.size() != n_pixels || (int)expected.size() != ccstae::N_OUTPUTS) {
            std::cerr << "ERROR: pattern " << patterns << ": " << counts.size() << " counts (want " << n_pixels
                      << "), " << expected.size() << " outputs (want " << ccstae::N_OUTPUTS << ")" << std::endl;
            return 2;
        }
        int dy = 0, dx = 0;
#if CCSTAE_ORIGIN_SHIFT
        if (!(fsh >> dy >> dx)) {
            std::cerr << "ERROR: no shift for pattern " << patterns << " in tb_data/tb_frontend_shifts.dat" << std::endl;
            return 2;
        }
#endif
        double out[ccstae::N_OUTPUTS];
        ccstae::run_pattern(counts.data(), out, dy, dx);
        for (int k = 0; k < ccstae::N_OUTPUTS; k++) {
            std::fprintf(log, "%.17g%s", out[k], k + 1 < ccstae::N_OUTPUTS ? " " : "\n");
            mismatches += out[k] != expected[k];
        }
        patterns++;
    }
    std::fclose(log);
    std::cout << "ccstae_top: " << patterns << " patterns, " << mismatches << " outputs differ from the expected"
              << std::endl;
    return mismatches ? 1 : 0;
}
