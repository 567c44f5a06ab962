"""Studies over many variants: the accuracy-vs-resources sweep and the robustness study (imports pipeline and below)."""
