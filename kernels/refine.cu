// CUDA implementation of the fused refine op (math in refine.cuh, ABI in wbg_refine.h).
//
// One thread per output element (per cell for the foreground pyramid), x fastest, so the float / half planes are written with fully coalesced stores
// and the u8 frame rows are read by neighbouring threads from neighbouring addresses. Every launch goes on the
// caller's stream; nothing synchronises (errors are launch errors from cudaGetLastError).
#include <cuda_runtime.h>

#include "refine.cuh"

namespace {

constexpr int kBlockX = 32, kBlockY = 8;

__global__ void pack_kernel(wbg_pack_args a, int32_t ph, int32_t pw) {
    const int32_t c = blockIdx.x * blockDim.x + threadIdx.x;
    const int32_t row = blockIdx.y * blockDim.y + threadIdx.y;
    const int32_t k = blockIdx.z;
    if (c >= pw || row >= ph) return;
    const bool full = a.n_patches == 0;
    const int32_t y = (full ? 0 : a.patches[2 * k]) + row, x = (full ? 0 : a.patches[2 * k + 1]) + c;
    const int64_t plane = (int64_t)ph * pw;
    const int64_t o = (int64_t)k * 5 * plane + (int64_t)row * pw + c;

    const wbg::Tap ty = wbg::tap(y, a.height, wbg::axis_scale(a.height, a.refine_h));
    const wbg::Tap tx = wbg::tap(x, a.width, wbg::axis_scale(a.width, a.refine_w));
    const uint8_t* f0 = a.frame + (int64_t)ty.i0 * a.width * 3;
    const uint8_t* f1 = a.frame + (int64_t)ty.i1 * a.width * 3;
    const int32_t x0 = tx.i0 * 3, x1 = tx.i1 * 3;
    wbg::store(a.out, a.out_dtype, o, wbg::sample_u8(f0 + 2, f1 + 2, x0, x1, ty.w, tx.w));
    wbg::store(a.out, a.out_dtype, o + plane, wbg::sample_u8(f0 + 1, f1 + 1, x0, x1, ty.w, tx.w));
    wbg::store(a.out, a.out_dtype, o + 2 * plane, wbg::sample_u8(f0, f1, x0, x1, ty.w, tx.w));

    float d = 0.f;
    if (a.depth) {
        const wbg::Tap dy = wbg::tap(y, a.depth_h, wbg::axis_scale(a.depth_h, a.refine_h));
        const wbg::Tap dx = wbg::tap(x, a.depth_w, wbg::axis_scale(a.depth_w, a.refine_w));
        d = wbg::sample_f32(a.depth + (int64_t)dy.i0 * a.depth_w, a.depth + (int64_t)dy.i1 * a.depth_w, dx.i0,
                            dx.i1, dy.w, dx.w);
    }
    wbg::store(a.out, a.out_dtype, o + 3 * plane, d);
    const wbg::Tap ay = wbg::tap(y, a.alpha_h, wbg::axis_scale(a.alpha_h, a.refine_h));
    const wbg::Tap ax = wbg::tap(x, a.alpha_w, wbg::axis_scale(a.alpha_w, a.refine_w));
    wbg::store(a.out, a.out_dtype, o + 4 * plane,
               wbg::sample_f32(a.alpha + (int64_t)ay.i0 * a.alpha_w, a.alpha + (int64_t)ay.i1 * a.alpha_w, ax.i0,
                               ax.i1, ay.w, ax.w));
}

// Patch mode, step 1: index[cell] = the last patch covering it (atomicMax keeps "later patch wins" race-free).
__global__ void patch_index_kernel(wbg_finish_args f, int32_t* index) {
    const int32_t p = f.patch_size, k = blockIdx.z;
    const int32_t c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y * blockDim.y + threadIdx.y;
    if (c >= p || r >= p) return;
    const int32_t y = f.patches[2 * k] + r, x = f.patches[2 * k + 1] + c;
    if (y < 0 || x < 0 || y >= f.refine_h || x >= f.refine_w) return;  // the binding rejects these; never write out
    atomicMax(index + (int64_t)y * f.refine_w + x, k);
}

// Patch mode, step 2: the refined grid, NaN where no patch covers the cell.
__global__ void patch_grid_kernel(wbg_finish_args f, const int32_t* index, float* grid) {
    const int32_t x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= f.refine_w || y >= f.refine_h) return;
    const int64_t cell = (int64_t)y * f.refine_w + x;
    const int32_t k = index[cell];
    float v = wbg::nan_value();
    if (k >= 0) {
        const int32_t p = f.patch_size;
        const int64_t in = (int64_t)(y - f.patches[2 * k]) * p + (x - f.patches[2 * k + 1]);
        v = wbg::clamp01(wbg::load(f.packed, f.packed_dtype, ((int64_t)k * 5 + 4) * p * p + in) +
                         wbg::load(f.delta, f.delta_dtype, (int64_t)k * p * p + in));
    }
    grid[cell] = v;
}

// Full grid: the refined value of a cell straight from packed + delta; patch mode: from the grid of step 2.
__device__ __forceinline__ float refined(const wbg_finish_args& f, const float* grid, int32_t y, int32_t x) {
    const int64_t cell = (int64_t)y * f.refine_w + x;
    if (grid) return grid[cell];
    return wbg::clamp01(wbg::load(f.packed, f.packed_dtype, (int64_t)4 * f.refine_h * f.refine_w + cell) +
                        wbg::load(f.delta, f.delta_dtype, cell));
}

// Foreground colours: the pyramid (refine.cuh), one thread per cell, one launch per level and direction.
__global__ void fg_cell_kernel(wbg_finish_args f, float* buf, wbg::FgLevels L) {
    const int32_t j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
    if (j < L.w[0] && i < L.h[0]) wbg::fg_cell(f, buf, L, i, j);
}

__global__ void fg_down_kernel(float* buf, wbg::FgLevels L, int32_t l) {
    const int32_t j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
    if (j < L.w[l + 1] && i < L.h[l + 1]) wbg::fg_down_cell(buf, L, l, i, j);
}

__global__ void fg_up_kernel(float* buf, wbg::FgLevels L, int32_t l) {
    const int32_t j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
    if (j < L.w[l] && i < L.h[l]) wbg::fg_up_cell(buf, L, l, i, j);
}

__global__ void finish_kernel(wbg_finish_args f, const float* grid, const float* fg_grid, int32_t gh, int32_t gw) {
    const int32_t x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= f.width || y >= f.height) return;
    const wbg::Tap ty = wbg::tap(y, f.refine_h, wbg::axis_scale(f.refine_h, f.height));
    const wbg::Tap tx = wbg::tap(x, f.refine_w, wbg::axis_scale(f.refine_w, f.width));
    float a = wbg::bilerp_hv(refined(f, grid, ty.i0, tx.i0), refined(f, grid, ty.i0, tx.i1),
                          refined(f, grid, ty.i1, tx.i0), refined(f, grid, ty.i1, tx.i1), ty.w, tx.w);
    if (grid && isnan(a)) {
        const wbg::Tap cy = wbg::tap(y, f.alpha_h, wbg::axis_scale(f.alpha_h, f.height));
        const wbg::Tap cx = wbg::tap(x, f.alpha_w, wbg::axis_scale(f.alpha_w, f.width));
        a = wbg::sample_f32(f.alpha + (int64_t)cy.i0 * f.alpha_w, f.alpha + (int64_t)cy.i1 * f.alpha_w, cx.i0,
                            cx.i1, cy.w, cx.w);
    }
    wbg::finish_pixel(a, f, y, x, fg_grid, gh, gw);
}

inline dim3 blocks(int64_t w, int64_t h, int64_t z = 1) {
    return dim3((unsigned)((w + kBlockX - 1) / kBlockX), (unsigned)((h + kBlockY - 1) / kBlockY), (unsigned)z);
}

inline int launched() { return cudaGetLastError() == cudaSuccess ? WBG_OK : WBG_ERR_CUDA; }

}  // namespace

extern "C" {

int wbg_refine_abi_version(void) { return WBG_REFINE_ABI_VERSION; }

const char* wbg_refine_status_string(int status) { return wbg::status_string(status); }

size_t wbg_refine_finish_workspace_bytes(int32_t refine_h, int32_t refine_w) {
    // grid (float) + patch index (int32), each refine_h x refine_w
    return refine_h < 1 || refine_w < 1 ? 0 : (size_t)refine_h * (size_t)refine_w * 8;
}

size_t wbg_refine_foreground_workspace_bytes(int32_t height, int32_t width, int32_t fg_cell) {
    return wbg::fg_workspace_bytes(height, width, fg_cell);
}

int wbg_refine_cuda_device_count(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

int wbg_refine_pack_cuda(const wbg_pack_args* args, void* stream) {
    const int s = wbg::check_pack(args);
    if (s != WBG_OK) return s;
    const wbg_pack_args& a = *args;
    const int32_t n = a.n_patches ? a.n_patches : 1;
    const int32_t ph = a.n_patches ? a.patch_size : a.refine_h, pw = a.n_patches ? a.patch_size : a.refine_w;
    if (n > 65535) return WBG_ERR_SIZE;  // grid z limit
    pack_kernel<<<blocks(pw, ph, n), dim3(kBlockX, kBlockY), 0, (cudaStream_t)stream>>>(a, ph, pw);
    return launched();
}

int wbg_refine_finish_cuda(const wbg_finish_args* args, void* stream) {
    const int s = wbg::check_finish(args);
    if (s != WBG_OK) return s;
    const wbg_finish_args& f = *args;
    cudaStream_t st = (cudaStream_t)stream;
    float* grid = nullptr;
    const bool fg = wbg::fg_active(f);
    // workspace: the patches' part, then the foreground pyramid
    const size_t patch_bytes = f.n_patches ? wbg_refine_finish_workspace_bytes(f.refine_h, f.refine_w) : 0;
    const size_t fg_bytes = fg ? wbg::fg_workspace_bytes(f.height, f.width, f.fg_cell) : 0;
    if (patch_bytes + fg_bytes > 0) {
        if (!f.workspace) return WBG_ERR_NULL;
        if (f.workspace_bytes < patch_bytes + fg_bytes) return WBG_ERR_ARG;
    }
    float* fg_buf = nullptr;
    wbg::FgLevels L;
    if (fg) {
        fg_buf = (float*)((char*)f.workspace + patch_bytes);
        L = wbg::fg_levels(wbg::fg_cells(f.height, f.fg_cell), wbg::fg_cells(f.width, f.fg_cell));
        fg_cell_kernel<<<blocks(L.w[0], L.h[0]), dim3(kBlockX, kBlockY), 0, st>>>(f, fg_buf, L);
        for (int32_t l = 0; l + 1 < L.n; ++l)
            fg_down_kernel<<<blocks(L.w[l + 1], L.h[l + 1]), dim3(kBlockX, kBlockY), 0, st>>>(fg_buf, L, l);
        for (int32_t l = L.n - 1; l >= 0; --l)
            fg_up_kernel<<<blocks(L.w[l], L.h[l]), dim3(kBlockX, kBlockY), 0, st>>>(fg_buf, L, l);
        if (launched() != WBG_OK) return WBG_ERR_CUDA;
    }
    if (f.n_patches) {
        const size_t cells = (size_t)f.refine_h * f.refine_w;
        if (f.n_patches > 65535) return WBG_ERR_SIZE;
        grid = (float*)f.workspace;
        int32_t* index = (int32_t*)((char*)f.workspace + cells * sizeof(float));
        if (cudaMemsetAsync(index, 0xff, cells * sizeof(int32_t), st) != cudaSuccess) return WBG_ERR_CUDA;  // -1
        patch_index_kernel<<<blocks(f.patch_size, f.patch_size, f.n_patches), dim3(kBlockX, kBlockY), 0, st>>>(
            f, index);
        patch_grid_kernel<<<blocks(f.refine_w, f.refine_h), dim3(kBlockX, kBlockY), 0, st>>>(f, index, grid);
        if (launched() != WBG_OK) return WBG_ERR_CUDA;
    }
    const float* fg_grid = fg ? wbg::fg_plane(fg_buf, L, 0, 1) : nullptr;  // level 0's B planes
    finish_kernel<<<blocks(f.width, f.height), dim3(kBlockX, kBlockY), 0, st>>>(f, grid, fg_grid, fg ? L.h[0] : 0,
                                                                                   fg ? L.w[0] : 0);
    return launched();
}

}  // extern "C"
