"""Install target of the native fused refine op (libwbg_refine*.so from CMakeLists.txt); see wbg_edge.native."""
