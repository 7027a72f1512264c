"""Install target of the native fused refine op (libwbg_refine*.so, built by CMakeLists.txt); loaded by wbg_edge.native."""
