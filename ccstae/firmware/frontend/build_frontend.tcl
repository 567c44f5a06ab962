# Vitis HLS: C-simulate and synthesise ccstae_top (the front end + the hls4ml encoder).
#   vitis_hls -f build_frontend.tcl        (from the project folder; part and clock as hls4ml's project)
# Override with: vitis_hls -f build_frontend.tcl -tclargs <part> <clock_ns>
set part  [expr {[llength $argv] > 0 ? [lindex $argv 0] : "xcku115-flvb2104-2-i"}]
set clock [expr {[llength $argv] > 1 ? [lindex $argv 1] : 5}]
set cflags "-std=c++14 -Ifirmware -Ifirmware/ap_types"

open_project -reset ccstae_frontend_prj
set_top ccstae_top
add_files firmware/myproject.cpp -cflags $cflags
add_files firmware/ccstae_frontend.cpp -cflags $cflags
add_files -tb ccstae_frontend_test.cpp -cflags "$cflags -DWEIGHTS_DIR=\\\"firmware/weights\\\""
add_files -tb firmware/weights
add_files -tb tb_data
open_solution -reset solution1
set_part $part
create_clock -period $clock -name default
csim_design
csynth_design
exit
