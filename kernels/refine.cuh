// The one source of math of the fused refine op, compiled by nvcc (refine.cu) and by the C++ compiler
// (refine_cpu.cpp). wbg_edge/native_reference.py mirrors it operation for operation.
//
// Sampling: bilinear with align_corners=False pixel centres, as cv2.resize INTER_LINEAR and
// torch.nn.functional.interpolate(align_corners=False). For output index i on an axis of n_out from n_in:
//     s  = max(fma(n_in / n_out, i + 0.5, -0.5), 0)     float32, one rounding (what torch computes)
//     i0 = floor(s), i1 = min(i0 + 1, n_in - 1), w = s - i0
// and a 2-D value is a lerp of lerps with lerp(a, b, w) = a + w * (b - a), in one of two fixed orders:
//     bilerp_vh = lerp(lerp(a00, a10, wy), lerp(a01, a11, wy), wx)   vertical first: the u8 frame in pack
//     bilerp_hv = lerp(lerp(a00, a01, wx), lerp(a10, a11, wx), wy)   horizontal first: every float plane (depth and
//                                                                     alpha_coarse in pack, the refined alpha and the
//                                                                     coarse fallback in finish)
// (each order is the one that lets the CPU build touch the fewest samples: pack shrinks the frame, so it blends the
// two frame rows it needs and then gathers columns; the float planes are enlarged, so each source row is widened
// once and output rows blend two widened rows).
// Every multiply/add is rounded separately (no FMA contraction: the CPU build uses -ffp-contract=off, the device
// code __fmul_rn / __fadd_rn), so CPU and CUDA agree bit for bit and the numpy reference to the last float32
// rounding; torch (which blends horizontally first) agrees to ~1e-7.
//
// Pack: R, G, B = sample_vh(frame u8 channel) * (1 / 255.f) (BGR -> RGB); D = sample_hv(depth) or 0;
// A = sample_hv(alpha_coarse).
//
// Finish, full grid: A_r = clamp(packed[4] + delta, 0, 1) on the refine grid; a = sample_hv(A_r) at the frame size.
// Finish with patches (the patch rule): A_r is defined only on cells covered by a patch; where patches overlap,
// the later patch in the list wins. An output pixel takes sample_hv(A_r) only if all four of its taps
// (y0|y1, x0|x1) on the refine grid are covered; otherwise a = sample_hv(alpha_coarse) straight at the frame size.
// (Implemented by marking uncovered cells NaN: any NaN tap makes the bilinear value NaN, whatever its weight.)
// A single patch covering the grid gives exactly the full-grid result.
//
// Then, per pixel: a = lerp(a, prev, smoothing) when prev_alpha is given (= smoothing*prev + (1-smoothing)*a);
// a = clamp(a, 0, 1); alpha u8 = floor(a * 255 + 0.5); composite u8 = bg + round_q15((colour - bg) * alpha_q15(a))
// per channel (see composite() below), where colour is the frame's, or with foreground colours (fg_cell > 0, modes
// rgba and composite) the estimated foreground's at soft pixels (below). RGBA carries the colour with straight alpha.
//
// Foreground colours (fg_cell = k > 0). At a soft pixel (0 < alpha u8 < 255) the frame's colour I is a mix of the
// subject's F and the old background's B, I = a F + (1 - a) B; replacing I by F stops the old background showing
// through on the new one. Once per frame, from the frame and alpha_coarse only (so a begun finish makes it before
// the refiner has run):
//   grid   gh x gw = ceil(h / k) x ceil(w / k) cells; cell (i, j) is rows [i*h/gh, (i+1)*h/gh) x columns
//          [j*w/gw, (j+1)*w/gw) (integer division), S its integer byte sum per channel, n its pixel count.
//   weight t = clamp01(1 - 4 * clamp01(sample_hv(alpha_coarse at gh x gw))), W = t * t: 1 on what the coarse matte
//          calls background, 0 from a = 1/4 on (steep, so the subject's colours in partly covered cells stay out).
//   push-pull: level 0 is W and M = (float)S * (W / n) (the weighted mean colour, per channel); level l + 1 (ceil
//          halves, down to 1 x 1) holds the means of
//          2 x 2 blocks of level l, ((c00 + c01) + c10) + c11 of the children that exist, times 1/n (exact);
//          at the 1 x 1 top B = M / W (128 when W = 0: no background anywhere); going back up, each level's
//          B = lerp(U, M / W, min(1, 4 W)) where W > 0, else U, with U = sample_hv(B of the level above, at this
//          level's size): its own background where it has enough (a quarter of its area counts as all), the
//          surroundings' filled in where it has none (the hole behind the subject).
// Per soft pixel: B = sample_hv(level-0 B, at h x w) per channel, r = (1 - a) / max(a, 0.1),
//   F = clamp(I + (I - B) * r, 0, 255), colour = (u8)(F + 0.5). Above the floor this is the exact solve of
//   I = a F + (1 - a) B; below it F fades back to I. Divisions are IEEE (correctly rounded) on both builds.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "wbg_refine.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define WBG_HD __host__ __device__ __forceinline__
#else
#define WBG_HD inline
#endif

namespace wbg {

struct Tap {
    int32_t i0, i1;
    float w;
};

WBG_HD float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

WBG_HD float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

WBG_HD float fdiv(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

WBG_HD float lerp(float a, float b, float w) { return fadd(a, fmul(w, b - a)); }

WBG_HD float clamp01(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }

WBG_HD float axis_scale(int32_t n_in, int32_t n_out) { return (float)n_in / (float)n_out; }

// Bilinear tap of output index i (see the header comment); scale = axis_scale(n_in, n_out).
WBG_HD Tap tap(int32_t i, int32_t n_in, float scale) {
    float s = fmaf(scale, (float)i + 0.5f, -0.5f);
    s = s > 0.f ? s : 0.f;
    int32_t i0 = (int32_t)s;
    if (i0 > n_in - 1) i0 = n_in - 1;
    Tap t;
    t.i0 = i0;
    t.i1 = i0 < n_in - 1 ? i0 + 1 : i0;
    t.w = s - (float)i0;
    return t;
}

WBG_HD float bilerp_vh(float a00, float a01, float a10, float a11, float wy, float wx) {
    return lerp(lerp(a00, a10, wy), lerp(a01, a11, wy), wx);
}

WBG_HD float bilerp_hv(float a00, float a01, float a10, float a11, float wy, float wx) {
    return lerp(lerp(a00, a01, wx), lerp(a10, a11, wx), wy);
}

WBG_HD uint8_t quantise(float a) {  // a in [0, 1]
    return (uint8_t)(int32_t)fadd(fmul(a, 255.f), 0.5f);  // via int32: the conversion compilers vectorise
}

// Compositing in Q15 fixed point: a15 = round(a * 32767), out = bg + round((fg - bg) * a15 / 32768).
// Within 1 of floor(a*fg + (1-a)*bg + 0.5) for every a in [0, 1] (the weight is off by at most 1.5/32768), and it is
// a single rounding multiply-high on 16-bit lanes (SSSE3/AVX2 pmulhrsw, NEON vqrdmulh), 16-32 pixels per instruction.
WBG_HD int32_t alpha_q15(float a) {  // a in [0, 1]
    return (int32_t)fadd(fmul(a, 32767.f), 0.5f);
}

WBG_HD uint8_t composite(uint8_t fg, uint8_t bg, int32_t a15) {
    const int32_t d = (int32_t)fg - (int32_t)bg;  // arithmetic shift of a negative product: floor, as numpy's >>
    return (uint8_t)((int32_t)bg + ((d * a15 + 16384) >> 15));
}

WBG_HD float nan_value() {
    uint32_t bits = 0x7fc00000u;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

// IEEE binary16 <-> float32, round to nearest even (host path; the device uses the hardware conversions).
WBG_HD uint16_t float_to_half(float f) {
#if defined(__CUDA_ARCH__)
    return __half_as_ushort(__float2half_rn(f));
#else
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) return (uint16_t)(sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u));  // NaN / inf
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds past 65504: inf
    if (x < 0x38800000u) {                                     // below 2^-14: half subnormal or zero
        if (x < 0x33000000u) return (uint16_t)sign;            // below 2^-25 (a tie at 2^-25 goes to even 0)
        const uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u, shift = 126u - e;
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return (uint16_t)(sign | r);
    }
    const uint32_t b = x - 0x38000000u;  // rebias the exponent from 127 to 15
    uint32_t r = b >> 13;
    const uint32_t rem = b & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;  // a carry into the exponent is correct rounding
    return (uint16_t)(sign | r);
#endif
}

WBG_HD float half_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
    return __half2float(__ushort_as_half(h));
#else
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t x;
    if (e == 0) {
        float f = (float)m * 5.9604644775390625e-8f;  // m * 2^-24, exact
        memcpy(&x, &f, sizeof x);
        x |= sign;
    } else if (e == 31) {
        x = sign | 0x7f800000u | (m << 13);
    } else {
        x = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
#endif
}

WBG_HD float load(const void* p, int32_t dtype, int64_t i) {
    return dtype == WBG_F16 ? half_to_float(((const uint16_t*)p)[i]) : ((const float*)p)[i];
}

WBG_HD void store(void* p, int32_t dtype, int64_t i, float v) {
    if (dtype == WBG_F16)
        ((uint16_t*)p)[i] = float_to_half(v);
    else
        ((float*)p)[i] = v;
}

// Sampled u8 channel c of an interleaved BGR row pair (vertical first), scaled to [0, 1].
WBG_HD float sample_u8(const uint8_t* row0, const uint8_t* row1, int32_t x0, int32_t x1, float wy, float wx) {
    return fmul(bilerp_vh((float)row0[x0], (float)row0[x1], (float)row1[x0], (float)row1[x1], wy, wx),
                1.f / 255.f);
}

// A float plane (horizontal first).
WBG_HD float sample_f32(const float* row0, const float* row1, int32_t x0, int32_t x1, float wy, float wx) {
    return bilerp_hv(row0[x0], row0[x1], row1[x0], row1[x1], wy, wx);
}

// ---- Foreground colours (see the header comment) ----
constexpr float kFgRamp = 4.f, kFgGain = 4.f, kFgFloor = 0.1f, kFgEmpty = 128.f;
constexpr int32_t kFgMaxCell = 64;  // a cell's byte sum stays below 2^24: exact as a float

WBG_HD int32_t fg_cells(int32_t n, int32_t cell) { return (n + cell - 1) / cell; }

// First pixel of cell i of g cells over n pixels.
WBG_HD int32_t fg_bound(int32_t i, int32_t n, int32_t g) { return (int32_t)(((int64_t)i * n) / g); }

WBG_HD float fg_weight(float alpha_coarse) {
    const float t = clamp01(1.f - fmul(clamp01(alpha_coarse), kFgRamp));
    return fmul(t, t);
}

// Mean of the 2 x 2 children (i, j) of a level plane of h x w (those inside it).
WBG_HD float fg_down(const float* src, int32_t h, int32_t w, int32_t i, int32_t j) {
    const int32_t y = 2 * i, x = 2 * j;
    const bool row = y + 1 < h, col = x + 1 < w;
    const float* p = src + (int64_t)y * w + x;
    float s = p[0];
    if (col) s = fadd(s, p[1]);
    if (row) s = fadd(s, p[w]);
    if (row && col) s = fadd(s, p[w + 1]);
    return fmul(s, row && col ? 0.25f : (row || col ? 0.5f : 1.f));
}

WBG_HD float fg_top(float m, float w) { return w > 0.f ? fdiv(m, w) : kFgEmpty; }

WBG_HD float fg_up(float m, float w, float coarser) {
    if (!(w > 0.f)) return coarser;
    const float c = fmul(w, kFgGain);
    return lerp(coarser, fdiv(m, w), c < 1.f ? c : 1.f);
}

// 0 < quantise(a) < 255, as float compares of a * 255 + 0.5 (the same test: truncation gives 1..254 exactly when
// the value is in [1, 255); NaN is never soft), so it vectorises.
WBG_HD bool fg_soft(float a) {
    const float v = fadd(fmul(a, 255.f), 0.5f);
    return v >= 1.f && v < 255.f;
}

WBG_HD float fg_ratio(float a) { return fdiv(1.f - a, a > kFgFloor ? a : kFgFloor); }

WBG_HD uint8_t fg_colour(uint8_t i, float b, float r) {
    const float v = (float)i;
    float c = fadd(v, fmul(v - b, r));
    c = c < 0.f ? 0.f : (c > 255.f ? 255.f : c);
    return (uint8_t)(int32_t)fadd(c, 0.5f);
}

// The push-pull pyramid in one buffer: per level (grid first, halving to 1 x 1) the planes W and M (3); going up,
// each level's B replaces its M, cell by cell.
struct FgLevels {
    int32_t n = 0;
    int32_t h[32], w[32];
    int64_t at[33];  // float offset of each level; at[n] = total floats
};

WBG_HD FgLevels fg_levels(int32_t gh, int32_t gw) {
    FgLevels L;
    int64_t o = 0;
    for (;;) {
        L.h[L.n] = gh;
        L.w[L.n] = gw;
        L.at[L.n++] = o;
        o += (int64_t)gh * gw * 4;
        if (gh == 1 && gw == 1) break;
        gh = (gh + 1) / 2;
        gw = (gw + 1) / 2;
    }
    L.at[L.n] = o;
    return L;
}

// Bytes of the pyramid of an h x w frame (0 for bad arguments).
inline size_t fg_workspace_bytes(int32_t height, int32_t width, int32_t fg_cell) {
    if (height < 1 || width < 1 || fg_cell < 1 || fg_cell > kFgMaxCell) return 0;
    const FgLevels L = fg_levels(fg_cells(height, fg_cell), fg_cells(width, fg_cell));
    return (size_t)L.at[L.n] * sizeof(float);
}

// Plane p (0 = W, 1..3 = M, then B) of level l.
WBG_HD float* fg_plane(float* buf, const FgLevels& L, int32_t l, int32_t p) {
    return buf + L.at[l] + (int64_t)p * L.h[l] * L.w[l];
}

// Level 0 cell (i, j): the cell's mean colour, weighted, from the frame and the coarse alpha.
WBG_HD void fg_cell(const wbg_finish_args& f, float* buf, const FgLevels& L, int32_t i, int32_t j) {
    const int32_t gh = L.h[0], gw = L.w[0];
    const int32_t y0 = fg_bound(i, f.height, gh), y1 = fg_bound(i + 1, f.height, gh);
    const int32_t x0 = fg_bound(j, f.width, gw), x1 = fg_bound(j + 1, f.width, gw);
    int32_t s[3] = {0, 0, 0};
    for (int32_t y = y0; y < y1; ++y) {
        const uint8_t* p = f.frame + ((int64_t)y * f.width + x0) * 3;
        for (int32_t x = 0; x < (x1 - x0) * 3; x += 3) {
            s[0] += p[x];
            s[1] += p[x + 1];
            s[2] += p[x + 2];
        }
    }
    const Tap ty = tap(i, f.alpha_h, axis_scale(f.alpha_h, gh)), tx = tap(j, f.alpha_w, axis_scale(f.alpha_w, gw));
    const float wt = fg_weight(sample_f32(f.alpha + (int64_t)ty.i0 * f.alpha_w, f.alpha + (int64_t)ty.i1 * f.alpha_w,
                                          tx.i0, tx.i1, ty.w, tx.w));
    const float wn = fdiv(wt, (float)((y1 - y0) * (x1 - x0)));
    const int64_t c = (int64_t)i * gw + j, plane = (int64_t)gh * gw;
    buf[c] = wt;
    for (int32_t k = 0; k < 3; ++k) buf[c + (k + 1) * plane] = fmul((float)s[k], wn);
}

// Level l + 1 cell (i, j) from level l.
WBG_HD void fg_down_cell(float* buf, const FgLevels& L, int32_t l, int32_t i, int32_t j) {
    const int32_t h = L.h[l], w = L.w[l];
    const int64_t c = (int64_t)i * L.w[l + 1] + j;
    for (int32_t p = 0; p < 4; ++p) fg_plane(buf, L, l + 1, p)[c] = fg_down(fg_plane(buf, L, l, p), h, w, i, j);
}

// B of level l cell (i, j): the top's M / W, or from the level above.
WBG_HD void fg_up_cell(float* buf, const FgLevels& L, int32_t l, int32_t i, int32_t j) {
    const int64_t c = (int64_t)i * L.w[l] + j;
    const float w = fg_plane(buf, L, l, 0)[c];
    if (l == L.n - 1) {
        for (int32_t k = 0; k < 3; ++k) fg_plane(buf, L, l, 1 + k)[c] = fg_top(fg_plane(buf, L, l, 1 + k)[c], w);
        return;
    }
    const int32_t hu = L.h[l + 1], wu = L.w[l + 1];
    const Tap ty = tap(i, hu, axis_scale(hu, L.h[l])), tx = tap(j, wu, axis_scale(wu, L.w[l]));
    for (int32_t k = 0; k < 3; ++k) {
        const float* b = fg_plane(buf, L, l + 1, 1 + k);
        const float up = sample_f32(b + (int64_t)ty.i0 * wu, b + (int64_t)ty.i1 * wu, tx.i0, tx.i1, ty.w, tx.w);
        fg_plane(buf, L, l, 1 + k)[c] = fg_up(fg_plane(buf, L, l, 1 + k)[c], w, up);
    }
}

// The colours of pixel (y, x) (frame bytes px) for alpha a into out[3]; grid: level-0 B planes (gh x gw each).
WBG_HD void fg_pixel(const float* grid, int32_t gh, int32_t gw, int32_t h, int32_t w, int32_t y, int32_t x,
                     const uint8_t* px, float a, uint8_t* out) {
    if (!fg_soft(a)) {
        out[0] = px[0];
        out[1] = px[1];
        out[2] = px[2];
        return;
    }
    const Tap ty = tap(y, gh, axis_scale(gh, h)), tx = tap(x, gw, axis_scale(gw, w));
    const float r = fg_ratio(a);
    const int64_t plane = (int64_t)gh * gw;
    for (int32_t k = 0; k < 3; ++k) {
        const float* b = grid + k * plane;
        out[k] = fg_colour(px[k], sample_f32(b + (int64_t)ty.i0 * gw, b + (int64_t)ty.i1 * gw, tx.i0, tx.i1, ty.w, tx.w), r);
    }
}

// Foreground colours are made (and need alpha_coarse) only for the modes that carry colour.
WBG_HD bool fg_active(const wbg_finish_args& f) {
    return f.fg_cell > 0 && (f.mode == WBG_MODE_RGBA || f.mode == WBG_MODE_COMPOSITE);
}

// The per-pixel tail of finish (the CUDA build's; the CPU build runs the same operations row by row): smoothing,
// clamp, outputs, for pixel (y, x); fg_grid: the level-0 B planes (gh x gw each) for foreground colours, or NULL.
WBG_HD void finish_pixel(float a, const wbg_finish_args& f, int32_t y, int32_t x, const float* fg_grid, int32_t gh,
                         int32_t gw) {
    const int64_t pix = (int64_t)y * f.width + x;
    if (f.prev_alpha) a = lerp(a, f.prev_alpha[pix], f.smoothing);
    a = clamp01(a);
    if (f.out_alpha) f.out_alpha[pix] = a;
    const uint8_t* px = f.frame + pix * 3;
    uint8_t fg[3];
    if (fg_grid && f.mode != WBG_MODE_ALPHA) {
        fg_pixel(fg_grid, gh, gw, f.height, f.width, y, x, px, a, fg);
        px = fg;
    }
    switch (f.mode) {
        case WBG_MODE_ALPHA:
            f.out[pix] = quantise(a);
            break;
        case WBG_MODE_RGBA:
            f.out[pix * 4 + 0] = px[0];
            f.out[pix * 4 + 1] = px[1];
            f.out[pix * 4 + 2] = px[2];
            f.out[pix * 4 + 3] = quantise(a);
            break;
        case WBG_MODE_COMPOSITE: {
            const uint8_t* bg = f.background_is_colour ? f.background : f.background + pix * 3;
            const int32_t a15 = alpha_q15(a);
            f.out[pix * 3 + 0] = composite(px[0], bg[0], a15);
            f.out[pix * 3 + 1] = composite(px[1], bg[1], a15);
            f.out[pix * 3 + 2] = composite(px[2], bg[2], a15);
            break;
        }
        default:
            break;
    }
}

// Checks shared by both back ends (host side); WBG_OK or the status to return.
inline int check_pack(const wbg_pack_args* a) {
    if (!a || !a->frame || !a->alpha || !a->out) return WBG_ERR_NULL;
    if (a->height < 1 || a->width < 1 || a->alpha_h < 1 || a->alpha_w < 1 || a->refine_h < 1 || a->refine_w < 1)
        return WBG_ERR_SIZE;
    if (a->depth && (a->depth_h < 1 || a->depth_w < 1)) return WBG_ERR_SIZE;
    if (a->out_dtype != WBG_F32 && a->out_dtype != WBG_F16) return WBG_ERR_ARG;
    if (a->patches || a->n_patches) {
        if (!a->patches) return WBG_ERR_NULL;
        if (a->n_patches < 1 || a->patch_size < 1 || a->patch_size > a->refine_h || a->patch_size > a->refine_w)
            return WBG_ERR_SIZE;
    }
    return WBG_OK;
}

// with_refined false: packed / delta are not given yet (the CPU op's finish_begin).
inline int check_finish(const wbg_finish_args* a, bool with_refined = true) {
    if (!a || !a->frame || (with_refined && (!a->packed || !a->delta))) return WBG_ERR_NULL;
    if (a->height < 1 || a->width < 1 || a->refine_h < 1 || a->refine_w < 1) return WBG_ERR_SIZE;
    if ((a->packed_dtype != WBG_F32 && a->packed_dtype != WBG_F16) ||
        (a->delta_dtype != WBG_F32 && a->delta_dtype != WBG_F16))
        return WBG_ERR_ARG;
    if (a->mode < WBG_MODE_NONE || a->mode > WBG_MODE_COMPOSITE) return WBG_ERR_ARG;
    if (a->mode != WBG_MODE_NONE && !a->out) return WBG_ERR_NULL;
    if (a->mode == WBG_MODE_NONE && !a->out_alpha) return WBG_ERR_NULL;
    if (a->mode == WBG_MODE_COMPOSITE && !a->background) return WBG_ERR_NULL;
    if (a->fg_cell < 0 || a->fg_cell > kFgMaxCell) return WBG_ERR_ARG;
    if (fg_active(*a) && !a->alpha) return WBG_ERR_NULL;
    if (fg_active(*a) && (a->alpha_h < 1 || a->alpha_w < 1)) return WBG_ERR_SIZE;
    if (!(a->smoothing >= 0.f && a->smoothing <= 1.f)) return WBG_ERR_ARG;
    if (a->patches || a->n_patches) {
        if (!a->patches || !a->alpha) return WBG_ERR_NULL;
        if (a->n_patches < 1 || a->patch_size < 1 || a->patch_size > a->refine_h || a->patch_size > a->refine_w ||
            a->alpha_h < 1 || a->alpha_w < 1)
            return WBG_ERR_SIZE;
    }
    return WBG_OK;
}

// Host-side origin check (the CUDA path gets device patches and trusts the binding's check instead).
inline int check_origins(const int32_t* patches, int32_t n, int32_t p, int32_t hr, int32_t wr) {
    for (int32_t k = 0; k < n; ++k) {
        const int32_t y = patches[2 * k], x = patches[2 * k + 1];
        if (y < 0 || x < 0 || y > hr - p || x > wr - p) return WBG_ERR_PATCH;
    }
    return WBG_OK;
}

inline const char* status_string(int s) {
    switch (s) {
        case WBG_OK: return "ok";
        case WBG_ERR_NULL: return "null pointer";
        case WBG_ERR_SIZE: return "bad size";
        case WBG_ERR_PATCH: return "patch outside the refine grid";
        case WBG_ERR_ARG: return "bad argument";
        case WBG_ERR_ALLOC: return "out of memory";
        case WBG_ERR_CUDA: return "CUDA error";
        default: return "unknown status";
    }
}

}  // namespace wbg
