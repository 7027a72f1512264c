/* C ABI of the fused refine op (libwbg_refine: CPU, libwbg_refine_cuda: CUDA). Bound by wbg_edge/native.py (ctypes).
 *
 * Contracts (the math itself is specified in refine.cuh):
 * - All arrays are dense, C-contiguous, row-major; sizes in elements. Pointers are host pointers for the _cpu
 *   functions and device pointers for the _cuda functions (the struct itself always lives on the host).
 * - No exception or abort crosses this boundary: every function returns a WBG_* status; on a non-zero status
 *   nothing useful was written. The Python binding checks everything first, the C side re-checks what would
 *   otherwise be undefined behaviour (null pointers, sizes, patch origins).
 * - The _cuda functions are asynchronous on `stream` (a cudaStream_t; NULL = legacy default stream); with patches
 *   the CUDA finish needs `workspace` of at least wbg_refine_finish_workspace_bytes(refine_h, refine_w) bytes, with
 *   foreground colours wbg_refine_foreground_workspace_bytes(height, width, fg_cell) more.
 * Bump WBG_REFINE_ABI_VERSION whenever a struct or signature changes (the binding refuses a mismatch).
 */
#ifndef WBG_REFINE_H
#define WBG_REFINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define WBG_API __declspec(dllexport)
#else
#define WBG_API __attribute__((visibility("default")))
#endif

#define WBG_REFINE_ABI_VERSION 4

enum wbg_status {
    WBG_OK = 0,
    WBG_ERR_NULL = 1,   /* a required pointer is NULL */
    WBG_ERR_SIZE = 2,   /* a size is <= 0 or inconsistent */
    WBG_ERR_PATCH = 3,  /* a patch origin puts the patch outside the refine grid */
    WBG_ERR_ARG = 4,    /* unknown dtype / mode, smoothing outside [0, 1], workspace too small */
    WBG_ERR_ALLOC = 5,  /* host allocation failed */
    WBG_ERR_CUDA = 6    /* a CUDA call failed (launch or no device) */
};

enum wbg_dtype { WBG_F32 = 0, WBG_F16 = 1 };

/* What refine_finish writes into `out` besides out_alpha. */
enum wbg_mode {
    WBG_MODE_NONE = 0,      /* out unused */
    WBG_MODE_ALPHA = 1,     /* u8 H x W */
    WBG_MODE_RGBA = 2,      /* u8 H x W x 4, B,G,R,A, straight (not premultiplied) alpha; colour as below */
    WBG_MODE_COMPOSITE = 3  /* u8 H x W x 3 BGR = a * colour + (1 - a) * background; colour: the frame's, or with
                               fg_cell > 0 the estimated foreground's at soft pixels (refine.cuh) */
};

/* refine_pack: frame, depth and coarse alpha resampled onto the refine grid (refine_h x refine_w).
 * Output planes, in order: R, G, B (u8 / 255), D, alpha_coarse. Full grid: patches NULL / n_patches 0, out is
 * (1, 5, refine_h, refine_w). Patches: int32 (n_patches, 2) (y, x) origins, out is (n_patches, 5, P, P) with
 * P = patch_size, each patch the window [y, y+P) x [x, x+P) of the full-grid result. */
typedef struct wbg_pack_args {
    const uint8_t* frame; int32_t height, width;      /* BGR, height x width x 3 */
    const float* depth; int32_t depth_h, depth_w;     /* in [0, 1]; NULL: D plane is 0 (depth-free mode) */
    const float* alpha; int32_t alpha_h, alpha_w;     /* coarse alpha */
    int32_t refine_h, refine_w;
    const int32_t* patches; int32_t n_patches; int32_t patch_size;
    void* out; int32_t out_dtype;                      /* enum wbg_dtype */
} wbg_pack_args;

/* refine_finish: alpha = clamp(packed[:, 4] + delta[:, 0], 0, 1) on the refine grid, upsampled to height x width,
 * optionally smoothed (a = a + smoothing * (prev - a), prev_alpha may equal out_alpha), clamped to [0, 1], written to
 * out_alpha (may be NULL) and to `out` for `mode`. With patches, alpha (coarse, alpha_h x alpha_w) is required. */
typedef struct wbg_finish_args {
    const void* packed; int32_t packed_dtype;          /* (N, 5, Ph, Pw) as written by refine_pack */
    const void* delta; int32_t delta_dtype;            /* (N, 1, Ph, Pw) refiner output, unclamped */
    int32_t refine_h, refine_w;
    const int32_t* patches; int32_t n_patches; int32_t patch_size;
    const float* alpha; int32_t alpha_h, alpha_w;      /* coarse alpha for pixels outside the patches */
    const uint8_t* frame; int32_t height, width;       /* BGR, height x width x 3 */
    const float* prev_alpha; float smoothing;          /* NULL: no temporal smoothing */
    float* out_alpha;                                  /* height x width, may be NULL */
    int32_t mode; uint8_t* out;                        /* enum wbg_mode */
    const uint8_t* background; int32_t background_is_colour; /* BGR height x width x 3, or one BGR colour (3) */
    int32_t fg_cell;                                   /* 0: the frame's colours; 1..64: foreground colours in
                                                          rgba / composite, background grid of fg_cell-pixel cells
                                                          (needs alpha) */
    void* workspace; size_t workspace_bytes;           /* CUDA with patches or foreground colours only */
} wbg_finish_args;

WBG_API int wbg_refine_abi_version(void);
WBG_API const char* wbg_refine_status_string(int status);

WBG_API int wbg_refine_pack_cpu(const wbg_pack_args* args, int n_threads);
WBG_API int wbg_refine_finish_cpu(const wbg_finish_args* args, int n_threads);
/* frame_planes: the R, G, B planes (/255) of a BGR frame bilinearly resampled to out_h x out_w (the sampling of
 * refine_pack), written to out (3 x out_h x out_w, float32 or float16): the models' input without a u8 detour. */
WBG_API int wbg_frame_planes_cpu(const uint8_t* frame, int32_t height, int32_t width, void* out, int32_t out_h,
                                 int32_t out_w, int32_t out_dtype, int n_threads);

/* refine_finish in two calls (CPU only): begin takes the finish arguments without packed / delta (ignored) and
 * starts the output blocks that read no refined cell (they need only the frame, the coarse alpha and the patch
 * origins) on a background thread at the lowest priority, so they can run while the refiner does; end, given the
 * refiner's output, makes the rest and returns once every output is written, with exactly the bytes
 * wbg_refine_finish_cpu writes. Every buffer named in args must stay valid and unchanged (outputs: untouched)
 * until end returns. end with packed or delta NULL cancels: it returns once the background has stopped writing
 * (outputs then hold a partial result). Every begun job must be ended exactly once (end frees it). */
typedef struct wbg_finish_job wbg_finish_job;
WBG_API wbg_finish_job* wbg_refine_finish_begin_cpu(const wbg_finish_args* args, int* status);
WBG_API int wbg_refine_finish_end_cpu(wbg_finish_job* job, const void* packed, int32_t packed_dtype,
                                      const void* delta, int32_t delta_dtype, int n_threads);

WBG_API size_t wbg_refine_finish_workspace_bytes(int32_t refine_h, int32_t refine_w);
/* Workspace the CUDA finish needs for foreground colours (placed after the patches' part when both are used). */
WBG_API size_t wbg_refine_foreground_workspace_bytes(int32_t height, int32_t width, int32_t fg_cell);
WBG_API int wbg_refine_cuda_device_count(void);
WBG_API int wbg_refine_pack_cuda(const wbg_pack_args* args, void* stream);
WBG_API int wbg_refine_finish_cuda(const wbg_finish_args* args, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* WBG_REFINE_H */
