// CPU implementation of the fused refine op (math in refine.cuh, ABI in wbg_refine.h).
//
// Rows are handed out in chunks to a small persistent std::thread pool (see Pool). Each output row is built in stages over contiguous buffers: a vertical
// lerp of the two source rows it samples (unit stride, vectorised), then a horizontal lerp through precomputed tap
// tables, then the per-pixel tail (smoothing, clamp, outputs) as unit-stride loops. The stage order is exactly the
// operation order of refine.cuh's bilerp (vertical first), so the result is bit-equal to the per-pixel formula.
// On x86-64 the row kernels are also compiled for AVX2 and picked at load time (target_clones); other CPUs
// (aarch64 Jetson: NEON is baseline) use the default build.
// Foreground colours (fg_cell > 0): the background grid is part of the plan (made once per frame from the frame and
// the coarse alpha, before any output row), and the solve runs only on output blocks that hold a soft pixel.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cmath>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include "refine.cuh"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(WBG_NO_TARGET_CLONES)
#define WBG_ROW __attribute__((target_clones("avx2", "default")))
#else
#define WBG_ROW
#endif

// Row kernels (outside the anonymous namespace: target_clones needs external linkage; visibility stays hidden).
namespace wbg_rows {

WBG_ROW void vlerp_u8_generic(const uint8_t* r0, const uint8_t* r1, float w, float* out, int32_t n) {
    for (int32_t i = 0; i < n; ++i) out[i] = wbg::lerp((float)r0[i], (float)r1[i], w);
}

#if defined(__x86_64__) && defined(__GNUC__)
// vlerp_u8 on 16 bytes per step (bytes widened straight to int32, one conversion each), and a last step that
// overlaps the previous one instead of a scalar tail: pack calls this on short spans (a patch row: ~140 bytes),
// where the compiler's version spent most of its time in its scalar prologue and tail. Same sub, mul, add.
__attribute__((target("avx2"))) void vlerp_u8_avx2(const uint8_t* r0, const uint8_t* r1, float w, float* out,
                                                   int32_t n) {
    const __m256 wv = _mm256_set1_ps(w);
    int32_t i = 0;
    for (;; i += 16) {
        if (i + 16 > n) {
            if (i >= n) break;
            i = n - 16;  // recomputes a few values already written: the same bits
        }
        const __m128i a16 = _mm_loadu_si128((const __m128i*)(r0 + i));
        const __m128i b16 = _mm_loadu_si128((const __m128i*)(r1 + i));
        const __m256 a0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(a16));
        const __m256 b0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b16));
        const __m256 a1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(a16, 8)));
        const __m256 b1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(b16, 8)));
        _mm256_storeu_ps(out + i, _mm256_add_ps(a0, _mm256_mul_ps(wv, _mm256_sub_ps(b0, a0))));
        _mm256_storeu_ps(out + i + 8, _mm256_add_ps(a1, _mm256_mul_ps(wv, _mm256_sub_ps(b1, a1))));
    }
}
#endif

WBG_ROW void vlerp_f32(const float* r0, const float* r1, float w, float* out, int32_t n) {
    for (int32_t i = 0; i < n; ++i) out[i] = wbg::lerp(r0[i], r1[i], w);
}

// out[i] = lerp(v[i0[i]], v[i1[i]], w[i]) * scale  (scale 1 is exact)
WBG_ROW void hlerp(const float* v, const int32_t* i0, const int32_t* i1, const float* w, float scale, float* out,
                   int32_t n) {
    for (int32_t i = 0; i < n; ++i) out[i] = wbg::fmul(wbg::lerp(v[i0[i]], v[i1[i]], w[i]), scale);
}

#if defined(__x86_64__) && defined(__GNUC__)
// hlerp for enlarging rows (v has nv elements, scale 1): when 8 consecutive outputs read from at most 8 consecutive
// inputs, one unaligned load and two in-register permutes replace 16 scalar loads. Same operations, same rounding
// (sub, mul, add; no FMA). Blocks that do not fit (shrinking, row end) take the scalar formula.
__attribute__((target("avx2"))) void hlerp_widen_avx2(const float* v, int32_t nv, const int32_t* i0,
                                                      const int32_t* i1, const float* w, float* out, int32_t n) {
    int32_t x = 0;
    for (; x + 8 <= n; x += 8) {
        const int32_t base = i0[x];
        if (i1[x + 7] - base > 7 || base + 8 > nv) {
            for (int32_t i = x; i < x + 8; ++i) out[i] = wbg::lerp(v[i0[i]], v[i1[i]], w[i]);
            continue;
        }
        const __m256 src = _mm256_loadu_ps(v + base);
        const __m256i b = _mm256_set1_epi32(base);
        const __m256 a0 = _mm256_permutevar8x32_ps(src, _mm256_sub_epi32(_mm256_loadu_si256((const __m256i*)(i0 + x)), b));
        const __m256 a1 = _mm256_permutevar8x32_ps(src, _mm256_sub_epi32(_mm256_loadu_si256((const __m256i*)(i1 + x)), b));
        _mm256_storeu_ps(out + x, _mm256_add_ps(a0, _mm256_mul_ps(_mm256_loadu_ps(w + x), _mm256_sub_ps(a1, a0))));
    }
    for (; x < n; ++x) out[x] = wbg::lerp(v[i0[x]], v[i1[x]], w[x]);
}

bool cpu_has_avx2() {
    static const bool yes = __builtin_cpu_supports("avx2");
    return yes;
}
#endif

// hlerp with scale 1 over a source row of nv elements (the float planes, all enlarged in practice)
inline void hlerp_widen(const float* v, int32_t nv, const int32_t* i0, const int32_t* i1, const float* w, float* out,
                        int32_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (cpu_has_avx2()) {
        hlerp_widen_avx2(v, nv, i0, i1, w, out, n);
        return;
    }
#endif
    hlerp(v, i0, i1, w, 1.f, out, n);
}

inline void vlerp_u8(const uint8_t* r0, const uint8_t* r1, float w, float* out, int32_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (n >= 16 && cpu_has_avx2()) {
        vlerp_u8_avx2(r0, r1, w, out, n);
        return;
    }
#endif
    vlerp_u8_generic(r0, r1, w, out, n);
}

// The three channels of an interleaved BGR row at once (one pass over the tap tables): R, G, B planes out.
WBG_ROW void hlerp_bgr_generic(const float* v, const int32_t* i0, const int32_t* i1, const float* w, float scale,
                               float* r, float* g, float* b, int32_t n) {
    for (int32_t i = 0; i < n; ++i) {
        const int32_t j0 = i0[i], j1 = i1[i];
        const float wi = w[i];
        b[i] = wbg::fmul(wbg::lerp(v[j0], v[j1], wi), scale);
        g[i] = wbg::fmul(wbg::lerp(v[j0 + 1], v[j1 + 1], wi), scale);
        r[i] = wbg::fmul(wbg::lerp(v[j0 + 2], v[j1 + 2], wi), scale);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
// hlerp_bgr on 8 pixels per step: one 4-float load per tap holds a pixel's B, G, R (and one float beyond, ignored:
// `v` must have one readable float past its last pixel), pixels k and k + 4 share a register, the lerp runs on all
// channels at once and a 4x4 transpose in each 128-bit lane turns pixels into planes. The same sub, mul, add, mul
// as the scalar formula, so the same bits; the compiler's version was scalar gathers (the largest cost of pack and
// frame_planes).
__attribute__((target("avx2"))) void hlerp_bgr_avx2(const float* v, const int32_t* i0, const int32_t* i1,
                                                    const float* w, float scale, float* r, float* g, float* b,
                                                    int32_t n) {
    const __m256 s = _mm256_set1_ps(scale);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 w8 = _mm256_loadu_ps(w + i);
        __m256 px[4];
        for (int32_t k = 0; k < 4; ++k) {
            const __m256 a = _mm256_loadu2_m128(v + i0[i + k + 4], v + i0[i + k]);
            const __m256 c = _mm256_loadu2_m128(v + i1[i + k + 4], v + i1[i + k]);
            const __m256 wk = _mm256_permutevar8x32_ps(w8, _mm256_setr_epi32(k, k, k, k, k + 4, k + 4, k + 4, k + 4));
            px[k] = _mm256_mul_ps(_mm256_add_ps(a, _mm256_mul_ps(wk, _mm256_sub_ps(c, a))), s);
        }
        // per 128-bit lane: rows (B G R x) of pixels 0..3 -> columns B0..B3, G0..G3, R0..R3
        const __m256 t0 = _mm256_unpacklo_ps(px[0], px[1]), t1 = _mm256_unpackhi_ps(px[0], px[1]);
        const __m256 t2 = _mm256_unpacklo_ps(px[2], px[3]), t3 = _mm256_unpackhi_ps(px[2], px[3]);
        _mm256_storeu_ps(b + i, _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2))));
        _mm256_storeu_ps(g + i, _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2))));
        _mm256_storeu_ps(r + i, _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3))));
    }
    if (i < n) hlerp_bgr_generic(v, i0 + i, i1 + i, w + i, scale, r + i, g + i, b + i, n - i);
}
#endif

// `v` holds one readable float past the last pixel's R (the AVX2 path loads 4 floats per pixel).
inline void hlerp_bgr(const float* v, const int32_t* i0, const int32_t* i1, const float* w, float scale, float* r,
                      float* g, float* b, int32_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (cpu_has_avx2()) {
        hlerp_bgr_avx2(v, i0, i1, w, scale, r, g, b, n);
        return;
    }
#endif
    hlerp_bgr_generic(v, i0, i1, w, scale, r, g, b, n);
}

// a[i] = c[i] where a[i] is NaN (the patch rule's "not refined here")
WBG_ROW void fill_nan(float* a, const float* c, int32_t n) {
    for (int32_t i = 0; i < n; ++i) a[i] = a[i] != a[i] ? c[i] : a[i];
}

// How many of n values are not NaN.
WBG_ROW int32_t count_numbers(const float* v, int32_t n) {
    int32_t k = 0;
    for (int32_t i = 0; i < n; ++i) k += v[i] == v[i];
    return k;
}

// How many of n bytes are non-zero (marks are 0 or 1).
WBG_ROW int32_t count_marked(const uint8_t* m, int32_t n) {
    int32_t k = 0;
    for (int32_t i = 0; i < n; ++i) k += m[i] != 0;
    return k;
}

// 0 when all n values are exactly 0, 1 when all are exactly 1, else 2.
WBG_ROW int32_t zeros_or_ones(const float* v, int32_t n) {
    int32_t not0 = 0, not1 = 0;
    for (int32_t i = 0; i < n; ++i) {
        not0 |= v[i] != 0.f;
        not1 |= v[i] != 1.f;
    }
    return not0 == 0 ? 0 : (not1 == 0 ? 1 : 2);
}

// acc[i] += src[i] (the foreground grid's cells: sums of at most 64 bytes down a column fit 16 bits, and of 16 such
// sums across a row too; 16 lanes per AVX2 add)
WBG_ROW void add_u16(const uint16_t* src, uint16_t* acc, int32_t n) {
    for (int32_t i = 0; i < n; ++i) acc[i] = (uint16_t)(acc[i] + src[i]);
}

WBG_ROW void add_u8(const uint8_t* src, uint16_t* acc, int32_t n) {
    for (int32_t i = 0; i < n; ++i) acc[i] = (uint16_t)(acc[i] + src[i]);
}

// w[i] = fg_weight(lerp(h0[i], h1[i], wy)): the coarse alpha's two widened rows blended, then the cell weight
WBG_ROW void fg_weights_generic(const float* h0, const float* h1, float wy, float* w, int32_t n) {
    for (int32_t i = 0; i < n; ++i) w[i] = wbg::fg_weight(wbg::lerp(h0[i], h1[i], wy));
}

#if defined(__x86_64__) && defined(__GNUC__)
// clamp01 as its ternaries (v < 0 ? 0 : (v > 1 ? 1 : v): NaN stays NaN), which the compiler leaves scalar
__attribute__((target("avx2"))) inline __m256 clamp01_avx2(__m256 v) {
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.f);
    return _mm256_blendv_ps(_mm256_blendv_ps(v, one, _mm256_cmp_ps(v, one, _CMP_GT_OQ)), zero,
                            _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
}

__attribute__((target("avx2"))) void fg_weights_avx2(const float* h0, const float* h1, float wy, float* w,
                                                     int32_t n) {
    const __m256 wv = _mm256_set1_ps(wy), ramp = _mm256_set1_ps(wbg::kFgRamp), one = _mm256_set1_ps(1.f);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 a = _mm256_loadu_ps(h0 + i);
        const __m256 v = _mm256_add_ps(a, _mm256_mul_ps(wv, _mm256_sub_ps(_mm256_loadu_ps(h1 + i), a)));
        const __m256 t = clamp01_avx2(_mm256_sub_ps(one, _mm256_mul_ps(clamp01_avx2(v), ramp)));
        _mm256_storeu_ps(w + i, _mm256_mul_ps(t, t));
    }
    fg_weights_generic(h0 + i, h1 + i, wy, w + i, n - i);
}
#endif

inline void fg_weights(const float* h0, const float* h1, float wy, float* w, int32_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (cpu_has_avx2()) {
        fg_weights_avx2(h0, h1, wy, w, n);
        return;
    }
#endif
    fg_weights_generic(h0, h1, wy, w, n);
}

// o[j] = ((r0[2j] + r0[2j+1]) + r1[2j]) + r1[2j+1], times 1/4: wbg::fg_down with all four children
WBG_ROW void down_pairs(const float* r0, const float* r1, float* o, int32_t n) {
    for (int32_t j = 0; j < n; ++j)
        o[j] = wbg::fmul(wbg::fadd(wbg::fadd(wbg::fadd(r0[2 * j], r0[2 * j + 1]), r1[2 * j]), r1[2 * j + 1]), 0.25f);
}

// the last row of an odd height: two children
WBG_ROW void down_pairs1(const float* r0, float* o, int32_t n) {
    for (int32_t j = 0; j < n; ++j) o[j] = wbg::fmul(wbg::fadd(r0[2 * j], r0[2 * j + 1]), 0.5f);
}

// Whether any of n alpha values is soft (wbg::fg_soft).
WBG_ROW bool any_soft(const float* a, int32_t n) {
    int32_t k = 0;
    for (int32_t i = 0; i < n; ++i) {  // wbg::fg_soft without the branch of &&, so it vectorises
        const float v = wbg::fadd(wbg::fmul(a[i], 255.f), 0.5f);
        k += (int32_t)(v >= 1.f) & (int32_t)(v < 255.f);
    }
    return k != 0;
}

// The colours of n pixels for the outputs: foreground colours where alpha is soft, the frame's elsewhere (b0..b2:
// the local background's channels sampled at these pixels).
WBG_ROW void fg_colours_generic(const uint8_t* fr, const float* a, const float* b0, const float* b1, const float* b2,
                                uint8_t* o, int32_t n) {
    for (int32_t i = 0; i < n; ++i) {
        const bool soft = wbg::fg_soft(a[i]);
        const float r = wbg::fg_ratio(a[i]);
        o[3 * i] = soft ? wbg::fg_colour(fr[3 * i], b0[i], r) : fr[3 * i];
        o[3 * i + 1] = soft ? wbg::fg_colour(fr[3 * i + 1], b1[i], r) : fr[3 * i + 1];
        o[3 * i + 2] = soft ? wbg::fg_colour(fr[3 * i + 2], b2[i], r) : fr[3 * i + 2];
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
// fg_colours on 8 pixels per step: the 24 interleaved bytes split into channels with byte shuffles, the solve in
// float lanes with the scalar formula's operations (sub, div, sub, mul, add, max/min clamp, add, truncate: the same
// bits), the frame's bytes kept where alpha is not soft, and the channels interleaved back.
__attribute__((target("avx2"))) void fg_colours_avx2(const uint8_t* fr, const float* a, const float* b0,
                                                     const float* b1, const float* b2, uint8_t* o, int32_t n) {
    // channel c of 8 pixels: bytes c, c+3, .. of the first 16 (lo) and of the next 8 (hi)
    const __m128i lo[3] = {_mm_setr_epi8(0, 3, 6, 9, 12, 15, -128, -128, -128, -128, -128, -128, -128, -128, -128, -128),
                           _mm_setr_epi8(1, 4, 7, 10, 13, -128, -128, -128, -128, -128, -128, -128, -128, -128, -128, -128),
                           _mm_setr_epi8(2, 5, 8, 11, 14, -128, -128, -128, -128, -128, -128, -128, -128, -128, -128, -128)};
    const __m128i hi[3] = {_mm_setr_epi8(-128, -128, -128, -128, -128, -128, 2, 5, -128, -128, -128, -128, -128, -128, -128, -128),
                           _mm_setr_epi8(-128, -128, -128, -128, -128, 0, 3, 6, -128, -128, -128, -128, -128, -128, -128, -128),
                           _mm_setr_epi8(-128, -128, -128, -128, -128, 1, 4, 7, -128, -128, -128, -128, -128, -128, -128, -128)};
    // back: from (c0 | c1 << 64) and c2, output bytes 0..15 and 16..23
    const __m128i o01a = _mm_setr_epi8(0, 8, -128, 1, 9, -128, 2, 10, -128, 3, 11, -128, 4, 12, -128, 5);
    const __m128i o2a = _mm_setr_epi8(-128, -128, 0, -128, -128, 1, -128, -128, 2, -128, -128, 3, -128, -128, 4, -128);
    const __m128i o01b = _mm_setr_epi8(13, -128, 6, 14, -128, 7, 15, -128, -128, -128, -128, -128, -128, -128, -128, -128);
    const __m128i o2b = _mm_setr_epi8(-128, 5, -128, -128, 6, -128, -128, 7, -128, -128, -128, -128, -128, -128, -128, -128);
    const __m256 one = _mm256_set1_ps(1.f), floor_ = _mm256_set1_ps(wbg::kFgFloor), half = _mm256_set1_ps(0.5f);
    const __m256 s255 = _mm256_set1_ps(255.f), zero = _mm256_setzero_ps();
    const float* b[3] = {b0, b1, b2};
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 av = _mm256_loadu_ps(a + i);
        const __m256 q = _mm256_add_ps(_mm256_mul_ps(av, s255), half);
        const __m256i soft = _mm256_castps_si256(
            _mm256_and_ps(_mm256_cmp_ps(q, one, _CMP_GE_OQ), _mm256_cmp_ps(q, s255, _CMP_LT_OQ)));
        const __m128i blo = _mm_loadu_si128((const __m128i*)(fr + 3 * i));
        const __m128i bhi = _mm_loadl_epi64((const __m128i*)(fr + 3 * i + 16));
        if (_mm256_testz_si256(soft, soft)) {  // no soft pixel among the 8 (most, even in the band's blocks)
            _mm_storeu_si128((__m128i*)(o + 3 * i), blo);
            _mm_storel_epi64((__m128i*)(o + 3 * i + 16), bhi);
            continue;
        }
        // max(a, floor) as the scalar a > floor ? a : floor (maxps returns its second operand on NaN)
        const __m256 r = _mm256_div_ps(_mm256_sub_ps(one, av), _mm256_max_ps(av, floor_));
        __m128i ch[3];
        for (int32_t c = 0; c < 3; ++c) {
            const __m128i bytes = _mm_or_si128(_mm_shuffle_epi8(blo, lo[c]), _mm_shuffle_epi8(bhi, hi[c]));
            const __m256i iv = _mm256_cvtepu8_epi32(bytes);
            const __m256 v = _mm256_cvtepi32_ps(iv);
            __m256 f = _mm256_add_ps(v, _mm256_mul_ps(_mm256_sub_ps(v, _mm256_loadu_ps(b[c] + i)), r));
            // clamp as the scalar c < 0 ? 0 : (c > 255 ? 255 : c) (f is never NaN: r and the grid are finite)
            f = _mm256_min_ps(_mm256_max_ps(f, zero), s255);
            const __m256i fi = _mm256_blendv_epi8(iv, _mm256_cvttps_epi32(_mm256_add_ps(f, half)), soft);
            const __m128i p16 = _mm_packus_epi32(_mm256_castsi256_si128(fi), _mm256_extracti128_si256(fi, 1));
            ch[c] = _mm_packus_epi16(p16, p16);  // 8 bytes, twice
        }
        const __m128i c01 = _mm_unpacklo_epi64(ch[0], ch[1]);
        _mm_storeu_si128((__m128i*)(o + 3 * i), _mm_or_si128(_mm_shuffle_epi8(c01, o01a), _mm_shuffle_epi8(ch[2], o2a)));
        _mm_storel_epi64((__m128i*)(o + 3 * i + 16),
                         _mm_or_si128(_mm_shuffle_epi8(c01, o01b), _mm_shuffle_epi8(ch[2], o2b)));
    }
    if (i < n) fg_colours_generic(fr + 3 * i, a + i, b0 + i, b1 + i, b2 + i, o + 3 * i, n - i);
}
#endif

inline void fg_colours(const uint8_t* fr, const float* a, const float* b0, const float* b1, const float* b2,
                       uint8_t* o, int32_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (cpu_has_avx2()) {
        fg_colours_avx2(fr, a, b0, b1, b2, o, n);
        return;
    }
#endif
    fg_colours_generic(fr, a, b0, b1, b2, o, n);
}

// out[i] = fg_up(out[i], w[i], up[i]): a level's M becomes its B
WBG_ROW void fg_up_generic(float* out, const float* w, const float* up, int32_t n) {
    for (int32_t i = 0; i < n; ++i) out[i] = wbg::fg_up(out[i], w[i], up[i]);
}

#if defined(__x86_64__) && defined(__GNUC__)
// fg_up on 8 cells per step: the same mul, div, sub, mul, add, with the branches as blends (the compiler keeps the
// scalar division)
__attribute__((target("avx2"))) void fg_up_avx2(float* out, const float* w, const float* up, int32_t n) {
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.f), gain = _mm256_set1_ps(wbg::kFgGain);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 wv = _mm256_loadu_ps(w + i), u = _mm256_loadu_ps(up + i);
        const __m256 some = _mm256_cmp_ps(wv, zero, _CMP_GT_OQ);
        __m256 c = _mm256_mul_ps(wv, gain);
        c = _mm256_blendv_ps(one, c, _mm256_cmp_ps(c, one, _CMP_LT_OQ));  // c < 1 ? c : 1
        const __m256 mean = _mm256_div_ps(_mm256_loadu_ps(out + i), _mm256_blendv_ps(one, wv, some));
        const __m256 v = _mm256_add_ps(u, _mm256_mul_ps(c, _mm256_sub_ps(mean, u)));
        _mm256_storeu_ps(out + i, _mm256_blendv_ps(u, v, some));
    }
    fg_up_generic(out + i, w + i, up + i, n - i);
}
#endif

inline void fg_up(float* out, const float* w, const float* up, int32_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (cpu_has_avx2()) {
        fg_up_avx2(out, w, up, n);
        return;
    }
#endif
    fg_up_generic(out, w, up, n);
}

WBG_ROW void add_clamp(const float* p, const float* d, float* out, int32_t n) {
    for (int32_t i = 0; i < n; ++i) out[i] = wbg::clamp01(p[i] + d[i]);
}

// dst may be prev (the caller's out_alpha as last frame's alpha): each element is read before it is written
WBG_ROW void smooth_clamp(const float* a, const float* prev, float s, float* dst, int32_t n) {
    for (int32_t i = 0; i < n; ++i) dst[i] = wbg::clamp01(wbg::lerp(a[i], prev[i], s));
}

WBG_ROW void clamp(const float* a, float* dst, int32_t n) {
    for (int32_t i = 0; i < n; ++i) dst[i] = wbg::clamp01(a[i]);
}

WBG_ROW void quantise(const float* a, uint8_t* o, int32_t n) {
    for (int32_t i = 0; i < n; ++i) o[i] = wbg::quantise(a[i]);
}

WBG_ROW void rgba(const uint8_t* fr, const float* a, uint8_t* o, int32_t n) {
    for (int32_t i = 0; i < n; ++i) {
        o[4 * i] = fr[3 * i];
        o[4 * i + 1] = fr[3 * i + 1];
        o[4 * i + 2] = fr[3 * i + 2];
        o[4 * i + 3] = wbg::quantise(a[i]);
    }
}

// Q15 alpha spread over the three channels of a BGR row (q: n scratch values; two loops that both vectorise)
WBG_ROW void spread3_q15_generic(const float* a, int16_t* q, int16_t* a3, int32_t n) {
    for (int32_t i = 0; i < n; ++i) q[i] = (int16_t)wbg::alpha_q15(a[i]);
    for (int32_t i = 0; i < n; ++i) {
        const int16_t v = q[i];
        a3[3 * i] = v;
        a3[3 * i + 1] = v;
        a3[3 * i + 2] = v;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
// spread3_q15 on 8 pixels per step: alpha_q15 as a separate multiply and add then truncation (the scalar formula's
// rounding), then three byte shuffles lay each 16-bit value out three times. The compiler turns the scalar
// stride-3 stores into a slow sequence (measured: the largest cost of the composite finish at 720p).
__attribute__((target("avx2"))) void spread3_q15_avx2(const float* a, int16_t* a3, int32_t n) {
    const __m128i s0 = _mm_setr_epi8(0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 4, 5, 4, 5);
    const __m128i s1 = _mm_setr_epi8(4, 5, 6, 7, 6, 7, 6, 7, 8, 9, 8, 9, 8, 9, 10, 11);
    const __m128i s2 = _mm_setr_epi8(10, 11, 10, 11, 12, 13, 12, 13, 12, 13, 14, 15, 14, 15, 14, 15);
    const __m256 scale = _mm256_set1_ps(32767.f), half = _mm256_set1_ps(0.5f);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i q = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(a + i), scale), half));
        const __m128i q16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
        _mm_storeu_si128((__m128i*)(a3 + 3 * i), _mm_shuffle_epi8(q16, s0));
        _mm_storeu_si128((__m128i*)(a3 + 3 * i + 8), _mm_shuffle_epi8(q16, s1));
        _mm_storeu_si128((__m128i*)(a3 + 3 * i + 16), _mm_shuffle_epi8(q16, s2));
    }
    for (; i < n; ++i) a3[3 * i] = a3[3 * i + 1] = a3[3 * i + 2] = (int16_t)wbg::alpha_q15(a[i]);
}
#endif

inline void spread3_q15(const float* a, int16_t* q, int16_t* a3, int32_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (cpu_has_avx2()) {
        spread3_q15_avx2(a, a3, n);
        return;
    }
#endif
    spread3_q15_generic(a, q, a3, n);
}

// n bytes: o = composite(fg, bg, a3), all three interleaved with the same layout
WBG_ROW void composite(const uint8_t* fg, const uint8_t* bg, const int16_t* a3, uint8_t* o, int32_t n) {
    for (int32_t i = 0; i < n; ++i) o[i] = wbg::composite(fg[i], bg[i], a3[i]);
}

#if defined(__x86_64__) && defined(__GNUC__)
// composite() on 32 bytes per step: pmulhrsw is exactly (d * a15 + 16384) >> 15 on 16-bit lanes, so this is
// bit-identical to the scalar formula (and to the CUDA and numpy twins).
__attribute__((target("avx2"))) void composite_avx2(const uint8_t* fg, const uint8_t* bg, const int16_t* a3,
                                                    uint8_t* o, int32_t n) {
    const __m256i z = _mm256_setzero_si256();
    int32_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i f = _mm256_loadu_si256((const __m256i*)(fg + i));
        const __m256i b = _mm256_loadu_si256((const __m256i*)(bg + i));
        // unpack works within 128-bit lanes: lo holds elements 0-7 and 16-23, hi 8-15 and 24-31
        const __m256i flo = _mm256_unpacklo_epi8(f, z), fhi = _mm256_unpackhi_epi8(f, z);
        const __m256i blo = _mm256_unpacklo_epi8(b, z), bhi = _mm256_unpackhi_epi8(b, z);
        const __m256i a0 = _mm256_loadu_si256((const __m256i*)(a3 + i));
        const __m256i a1 = _mm256_loadu_si256((const __m256i*)(a3 + i + 16));
        const __m256i alo = _mm256_permute2x128_si256(a0, a1, 0x20), ahi = _mm256_permute2x128_si256(a0, a1, 0x31);
        const __m256i rlo = _mm256_add_epi16(blo, _mm256_mulhrs_epi16(_mm256_sub_epi16(flo, blo), alo));
        const __m256i rhi = _mm256_add_epi16(bhi, _mm256_mulhrs_epi16(_mm256_sub_epi16(fhi, bhi), ahi));
        _mm256_storeu_si256((__m256i*)(o + i), _mm256_packus_epi16(rlo, rhi));  // per-lane pack restores order
    }
    for (; i < n; ++i) o[i] = wbg::composite(fg[i], bg[i], a3[i]);
}
#endif

inline void composite_bytes(const uint8_t* fg, const uint8_t* bg, const int16_t* a3, uint8_t* o, int32_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (cpu_has_avx2()) {
        composite_avx2(fg, bg, a3, o, n);
        return;
    }
#endif
    composite(fg, bg, a3, o, n);
}

}  // namespace wbg_rows

namespace {

namespace rows = wbg_rows;

// memcpy with non-temporal stores for the whole 64-byte cache lines in the middle (x86-64: SSE2 is baseline); the
// partial lines at either end take ordinary stores (a partly written line leaves the write-combining buffer as
// several slow partial writes: numpy's buffers are 16-byte aligned, and finish writes runs of 64-pixel blocks).
// Plain memcpy elsewhere.
inline void stream_copy(void* dst, const void* src, size_t bytes) {
#if defined(__x86_64__) || defined(_M_X64)
    uint8_t* d = (uint8_t*)dst;
    const uint8_t* s = (const uint8_t*)src;
    const size_t head = std::min(bytes, (size_t)((64 - ((uintptr_t)d & 63)) & 63));
    std::memcpy(d, s, head);
    size_t i = head;
    for (; i + 64 <= bytes; i += 64)
        for (size_t k = 0; k < 64; k += 16)
            _mm_stream_si128((__m128i*)(d + i + k), _mm_loadu_si128((const __m128i*)(s + i + k)));
    std::memcpy(d + i, s + i, bytes - i);
#else
    std::memcpy(dst, src, bytes);
#endif
}

inline void stream_fence() {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_sfence();
#endif
}


// Bilinear taps of one axis, as separate arrays so the row loops read them with unit stride.
struct Taps {
    std::vector<int32_t> i0, i1;
    std::vector<float> w;
};

Taps taps(int32_t n_in, int32_t n_out, int32_t channels = 1) {
    Taps t;
    t.i0.resize((size_t)n_out);
    t.i1.resize((size_t)n_out);
    t.w.resize((size_t)n_out);
    const float scale = wbg::axis_scale(n_in, n_out);
    for (int32_t i = 0; i < n_out; ++i) {
        const wbg::Tap k = wbg::tap(i, n_in, scale);
        t.i0[(size_t)i] = k.i0 * channels;  // element offsets in an interleaved row
        t.i1[(size_t)i] = k.i1 * channels;
        t.w[(size_t)i] = k.w;
    }
    return t;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define WBG_HAVE_F16C 1
// Hardware float -> half (round to nearest even, like float_to_half) for the multiple-of-8 prefix; returns its length.
__attribute__((target("avx,f16c"))) int32_t to_half_f16c(const float* src, uint16_t* dst, int32_t n) {
    int32_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i*)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    return i;
}

bool has_f16c() {
    static const bool yes = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
    return yes;
}
#else
#define WBG_HAVE_F16C 0
#endif

// n floats of `src` into element `at` of a float32 or float16 tensor.
inline void put(void* out, int32_t dtype, int64_t at, const float* src, int32_t n) {
    if (dtype == WBG_F32) {
        std::memcpy((float*)out + at, src, sizeof(float) * (size_t)n);
    } else {
        uint16_t* o = (uint16_t*)out + at;
        int32_t i = 0;
#if WBG_HAVE_F16C
        if (has_f16c()) i = to_half_f16c(src, o, n);
#endif
        for (; i < n; ++i) o[i] = wbg::float_to_half(src[i]);
    }
}

// n floats from element `at` of a float32 or float16 tensor.
inline void get(const void* in, int32_t dtype, int64_t at, float* dst, int32_t n) {
    if (dtype == WBG_F32) {
        std::memcpy(dst, (const float*)in + at, sizeof(float) * (size_t)n);
    } else {
        const uint16_t* p = (const uint16_t*)in + at;
        for (int32_t i = 0; i < n; ++i) dst[i] = wbg::half_to_float(p[i]);
    }
}

// A small persistent worker pool: threads block on a condition variable between calls (no spinning that would
// compete with ONNX Runtime's threads) and are created once, not per call.
//
// A call hands out rows in chunks from a shared counter, and the calling thread works too. Only helpers that have
// actually joined the call are waited for: on a loaded 2-core board a helper the OS has not scheduled yet simply
// misses the call instead of holding it up for a whole time slice. A second concurrent call (pack and finish run
// on different pipeline threads) does not wait for the pool: it runs on its own thread.
// The pool is allocated once and never destroyed (its threads may outlive static destructors at exit), and is
// re-created in a forked child, which inherits the object but not the threads.
class Pool {
  public:
    static Pool& get() {
        static std::mutex create;
        static Pool* pool = nullptr;
        std::lock_guard<std::mutex> lock(create);
        if (!pool || pool->pid_ != getpid()) pool = new Pool();  // the parent's pool is leaked in a fork child
        return *pool;
    }

    // Runs body() on the calling thread and on up to `helpers` pool threads; body must pull its own work.
    void run(int helpers, const std::function<void()>& body) {
        std::unique_lock<std::mutex> busy(run_, std::try_to_lock);
        if (!busy.owns_lock() || helpers < 1) {
            body();
            return;
        }
        {
            std::lock_guard<std::mutex> lock(m_);
            while ((int)n_threads_ < helpers) {
                try {
                    std::thread(&Pool::loop, this).detach();
                    ++n_threads_;
                } catch (...) {  // no more threads: fewer helpers
                    break;
                }
            }
            job_ = &body;
            slots_ = helpers;
            ++generation_;
        }
        work_.notify_all();
        body();
        std::unique_lock<std::mutex> lock(m_);
        slots_ = 0;  // late helpers skip this call
        done_.wait(lock, [&] { return active_ == 0; });
        job_ = nullptr;
    }

  private:
    Pool() : pid_(getpid()) {}

    void loop() {
#if defined(__linux__)
        pthread_setname_np(pthread_self(), "wbg-pool");  // (top, perf)
#endif
        uint64_t seen = 0;
        std::unique_lock<std::mutex> lock(m_);
        for (;;) {
            work_.wait(lock, [&] { return generation_ != seen; });
            seen = generation_;
            if (slots_ < 1 || !job_) continue;
            --slots_;
            ++active_;
            const std::function<void()>* job = job_;
            lock.unlock();
            (*job)();
            lock.lock();
            if (--active_ == 0) done_.notify_all();
        }
    }

    const pid_t pid_;
    std::mutex run_, m_;
    std::condition_variable work_, done_;
    const std::function<void()>* job_ = nullptr;
    uint64_t generation_ = 0;
    int slots_ = 0, active_ = 0;
    size_t n_threads_ = 0;
};

// Runs fn(begin, end) over [0, n) in chunks on up to n_threads threads (the caller's included); small jobs stay on
// the calling thread. Returns WBG_OK, or WBG_ERR_ALLOC when a chunk ran out of memory (no exception escapes).
template <class Fn>
int parallel_rows(int64_t n, int64_t work_per_row, int n_threads, Fn fn) {
    const int64_t min_work = 1 << 15;  // below ~32k pixels per thread, handing work out costs more than it saves
    int64_t t = std::min<int64_t>(n_threads < 1 ? 1 : n_threads, n);
    t = std::min<int64_t>(t, std::max<int64_t>(1, n * work_per_row / min_work));
    const int64_t chunk = t <= 1 ? n : std::max<int64_t>(1, n / (t * 8));
    std::atomic<int64_t> next{0};
    std::atomic<int> status{WBG_OK};
    const std::function<void()> body = [&]() {
        try {
            for (int64_t b; (b = next.fetch_add(chunk)) < n;) fn(b, std::min(n, b + chunk));
        } catch (...) {
            status = WBG_ERR_ALLOC;
        }
    };
    if (t <= 1)
        body();
    else
        Pool::get().run((int)t - 1, body);
    return status;
}

// Horizontal-first sampling of a float plane onto output rows (bilerp_hv): each source row is widened once per
// patch into a two-row cache, and an output row blends two widened rows with one vectorised vertical lerp.
class HvRows {
  public:
    HvRows(const float* src, int32_t src_w, const Taps& ty, const Taps& tx, int32_t n)
        : src_(src), src_w_(src_w), ty_(ty), tx_(tx), h0_((size_t)n), h1_((size_t)n) {}

    // Output row y, columns [xo, xo + n) of the virtual grid, for patch k (the cache key includes it).
    void row(int32_t k, int32_t y, int32_t xo, int32_t n, float* out) {
        const int32_t y0 = ty_.i0[(size_t)y], y1 = ty_.i1[(size_t)y];
        const int64_t k0 = ((int64_t)k << 32) | (uint32_t)y0, k1 = ((int64_t)k << 32) | (uint32_t)y1;
        if (have1_ == k0 && have0_ != k0) {  // the previous output row's lower source row is this one's upper
            std::swap(h0_, h1_);
            std::swap(have0_, have1_);
        }
        widen(k0, y0, xo, n, h0_, have0_);
        widen(k1, y1, xo, n, h1_, have1_);
        rows::vlerp_f32(h0_.data(), h1_.data(), ty_.w[(size_t)y], out, n);
    }

  private:
    void widen(int64_t key, int32_t ys, int32_t xo, int32_t n, std::vector<float>& dst, int64_t& have) {
        if (have == key) return;
        rows::hlerp_widen(src_ + (int64_t)ys * src_w_, src_w_, tx_.i0.data() + xo, tx_.i1.data() + xo,
                          tx_.w.data() + xo, dst.data(), n);
        have = key;
    }

    const float* src_;
    int32_t src_w_;
    const Taps& ty_;
    const Taps& tx_;
    std::vector<float> h0_, h1_;
    int64_t have0_ = -1, have1_ = -1;
};

int pack(const wbg_pack_args& a, int n_threads) {
    const bool full = a.n_patches == 0;
    const int32_t n = full ? 1 : a.n_patches;
    const int32_t ph = full ? a.refine_h : a.patch_size, pw = full ? a.refine_w : a.patch_size;
    // Taps over the whole virtual grid; patches index into them. Frame taps are byte offsets in a BGR row.
    const Taps fy = taps(a.height, a.refine_h), fx = taps(a.width, a.refine_w, 3);
    const Taps ay = taps(a.alpha_h, a.refine_h), ax = taps(a.alpha_w, a.refine_w);
    Taps dy, dx;
    if (a.depth) {
        dy = taps(a.depth_h, a.refine_h);
        dx = taps(a.depth_w, a.refine_w);
    }
    const int64_t plane = (int64_t)ph * pw;
    return parallel_rows((int64_t)n * ph, (int64_t)pw * 8, n_threads, [&](int64_t begin, int64_t end) {
        const int32_t width = a.width, dw = a.depth_w, aw = a.alpha_w, pwl = pw;
        // float32 out: planes written in place (ordinary stores: the refiner reads them next, so they should stay
        // in cache); float16: staged and converted.
        const bool direct = a.out_dtype == WBG_F32;
        std::vector<float> buf(direct ? 0 : (size_t)pwl * 5), vf((size_t)width * 3 + 1);  // + 1: hlerp_bgr reads a float past the last pixel
        HvRows alpha(a.alpha, aw, ay, ax, pwl);
        std::unique_ptr<HvRows> depth(a.depth ? new HvRows(a.depth, dw, dy, dx, pwl) : nullptr);
        float* planes[5];
        for (int64_t row_id = begin; row_id < end; ++row_id) {
            const int32_t k = (int32_t)(row_id / ph), row = (int32_t)(row_id % ph);
            const int32_t y = (full ? 0 : a.patches[2 * k]) + row, xo = full ? 0 : a.patches[2 * k + 1];
            const int64_t o = (int64_t)k * 5 * plane + (int64_t)row * pwl;  // this row in plane 0 of patch k
            for (int32_t p = 0; p < 5; ++p)
                planes[p] = direct ? (float*)a.out + o + p * plane : buf.data() + (size_t)p * pwl;
            {   // frame: vertical lerp over the columns this row's taps span, then R, G, B from B, G, R
                const int32_t lo = fx.i0[(size_t)xo], hi = fx.i1[(size_t)(xo + pwl - 1)] + 3;
                rows::vlerp_u8(a.frame + (int64_t)fy.i0[(size_t)y] * width * 3 + lo,
                               a.frame + (int64_t)fy.i1[(size_t)y] * width * 3 + lo, fy.w[(size_t)y],
                               vf.data() + lo, hi - lo);
                rows::hlerp_bgr(vf.data(), fx.i0.data() + xo, fx.i1.data() + xo, fx.w.data() + xo, 1.f / 255.f,
                                planes[0], planes[1], planes[2], pwl);
            }
            if (depth)
                depth->row(k, y, xo, pwl, planes[3]);
            else
                std::fill(planes[3], planes[3] + pwl, 0.f);
            alpha.row(k, y, xo, pwl, planes[4]);
            if (!direct)
                for (int32_t p = 0; p < 5; ++p) put(a.out, a.out_dtype, o + p * plane, planes[p], pwl);
        }
    });
}

// The model input: R, G, B planes (/255) of the frame resampled to out_h x out_w, exactly as pack samples it.
int frame_planes(const uint8_t* frame, int32_t height, int32_t width, void* out, int32_t out_h, int32_t out_w,
                 int32_t out_dtype, int n_threads) {
    const Taps fy = taps(height, out_h), fx = taps(width, out_w, 3);
    const int64_t plane = (int64_t)out_h * out_w;
    return parallel_rows(out_h, (int64_t)out_w * 4, n_threads, [&](int64_t begin, int64_t end) {
        const bool direct = out_dtype == WBG_F32;
        std::vector<float> buf(direct ? 0 : (size_t)out_w * 3), vf((size_t)width * 3 + 1);  // + 1: hlerp_bgr reads a float past the last pixel
        const int32_t lo = fx.i0[0], hi = fx.i1[(size_t)out_w - 1] + 3;
        for (int64_t y = begin; y < end; ++y) {
            float* planes[3];
            for (int32_t c = 0; c < 3; ++c)
                planes[c] = direct ? (float*)out + c * plane + y * out_w : buf.data() + (size_t)c * out_w;
            rows::vlerp_u8(frame + (int64_t)fy.i0[(size_t)y] * width * 3 + lo,
                           frame + (int64_t)fy.i1[(size_t)y] * width * 3 + lo, fy.w[(size_t)y], vf.data() + lo,
                           hi - lo);
            rows::hlerp_bgr(vf.data(), fx.i0.data(), fx.i1.data(), fx.w.data(), 1.f / 255.f, planes[0], planes[1],
                            planes[2], out_w);
            if (!direct)
                for (int32_t c = 0; c < 3; ++c) put(out, out_dtype, c * plane + y * out_w, planes[c], out_w);
        }
    });
}

// Horizontal-first sampling of a float plane onto output rows, one block of output columns at a time (bilerp_hv).
// Each source row is widened once per block into the slot of its parity (an output row's two taps are adjacent
// rows, or the same row at the border), so the output rows between two source rows share their widening, and
// blocks that no output reads (constant, see finish) are never widened.
class BlockRows {
  public:
    BlockRows(const float* src, int32_t src_w, const Taps& ty, const Taps& tx, int32_t w, int32_t n_blocks)
        : src_(src), src_w_(src_w), ty_(ty), tx_(tx), buf_{std::vector<float>((size_t)w), std::vector<float>((size_t)w)},
          have_{std::vector<int32_t>((size_t)n_blocks, -1), std::vector<int32_t>((size_t)n_blocks, -1)} {}

    // Output row y, columns [x0, x0 + n) = block b, into out[x0, x0 + n).
    void row(int32_t y, int32_t b, int32_t x0, int32_t n, float* out) {
        const int32_t y0 = ty_.i0[(size_t)y], y1 = ty_.i1[(size_t)y];
        const float* r0 = widen(y0, b, x0, n);
        const float* r1 = widen(y1, b, x0, n);
        rows::vlerp_f32(r0 + x0, r1 + x0, ty_.w[(size_t)y], out + x0, n);
    }

  private:
    const float* widen(int32_t ys, int32_t b, int32_t x0, int32_t n) {
        std::vector<float>& dst = buf_[ys & 1];
        int32_t& have = have_[ys & 1][(size_t)b];
        if (have != ys) {
            rows::hlerp_widen(src_ + (int64_t)ys * src_w_, src_w_, tx_.i0.data() + x0, tx_.i1.data() + x0,
                              tx_.w.data() + x0, dst.data() + x0, n);
            have = ys;
        }
        return dst.data();
    }

    const float* src_;
    int32_t src_w_;
    const Taps& ty_;
    const Taps& tx_;
    std::vector<float> buf_[2];
    std::vector<int32_t> have_[2];
};

// A float buffer taken from a process-wide free list and given back when dropped: the foreground pyramid is a
// megabyte at 720p, and a fresh one each frame would cost page faults and zeroing (its contents are all written
// before they are read).
class PooledFloats {
  public:
    PooledFloats() = default;
    PooledFloats(const PooledFloats&) = delete;
    PooledFloats& operator=(const PooledFloats&) = delete;
    ~PooledFloats() { release(); }

    void reset(size_t n) {
        release();
        {
            std::lock_guard<std::mutex> lock(mutex());
            std::vector<std::unique_ptr<float[]>>& free = list();
            for (size_t i = 0; i < free.size(); ++i) {
                if (sizes()[i] >= n) {
                    buf_ = std::move(free[i]);
                    cap_ = sizes()[i];
                    free.erase(free.begin() + (ptrdiff_t)i);
                    sizes().erase(sizes().begin() + (ptrdiff_t)i);
                    return;
                }
            }
        }
        buf_.reset(new float[n]);
        cap_ = n;
    }

    float* data() { return buf_.get(); }
    const float* data() const { return buf_.get(); }

  private:
    void release() {
        if (!buf_) return;
        std::lock_guard<std::mutex> lock(mutex());
        if (list().size() < 8) {  // a few frame sizes / concurrent finishes; the rest is freed
            list().push_back(std::move(buf_));
            sizes().push_back(cap_);
        }
        buf_.reset();
    }
    // Leaked, like Pool (threads may use them after static destructors), and made anew in a forked child, whose
    // copy of the mutex may have been held by a thread the child does not have.
    struct Free {
        std::mutex m;
        std::vector<std::unique_ptr<float[]>> bufs;
        std::vector<size_t> sizes;
        pid_t pid = getpid();
    };
    static Free& free_list() {
        static std::atomic<Free*> f{new Free()};
        Free* p = f.load();
        if (p->pid != getpid()) {
            Free* fresh = new Free();
            if (!f.compare_exchange_strong(p, fresh)) delete fresh;
            p = f.load();
        }
        return *p;
    }
    static std::mutex& mutex() { return free_list().m; }
    static std::vector<std::unique_ptr<float[]>>& list() { return free_list().bufs; }
    static std::vector<size_t>& sizes() { return free_list().sizes; }

    std::unique_ptr<float[]> buf_;
    size_t cap_ = 0;
};

// The output frame in blocks of kBlock columns. A block whose pixels all take the coarse alpha (some refine tap row
// has no refined cell there: the patch rule) from coarse taps that are all exactly 0 or all exactly 1 has that
// constant alpha, bit for bit (a lerp of equal values is that value), and its composite is the background (alpha 0)
// or the frame (alpha 1; composite() of alpha_q15(1) returns the frame byte exactly): no sampling, no blending. At
// 720p about 90% of the pixels are such (measured on the synthetic clip: coarse alpha 94% exactly 0 or 1).
constexpr int32_t kBlock = 64;

// Block kinds of one output row.
enum : uint8_t { kZero = 0, kOne = 1, kCoarse = 2, kRefined = 3 };
// Which blocks a pass over output rows makes: those that read no refined cell (known before the refiner runs), those
// that do, or all.
enum : int { kPartCoarse = 1, kPartRefined = 2, kPartAll = 3 };

// What finish needs besides the refiner's output: taps, the patches over each refine row, and per block of output
// columns which refine rows have refined cells there (patch coverage) and which coarse rows are constant.
struct Plan {
    bool full = false;
    int32_t n_blocks = 0;
    Taps ty, tx, cy, cx;
    std::vector<int32_t> start, list;     // CSR: the patches over refine row y are list[start[y] .. start[y + 1])
    std::vector<uint8_t> cover;           // refine_h x n_blocks: 0 = no covered cell in the block's taps, 1 = some, 2 = all
    std::vector<uint8_t> coarse_const;    // alpha_h x n_blocks: 0 / 1 = all taps exactly that, 2 = other; empty: none
    std::vector<uint8_t> colour_row;      // a colour background as one BGR row of that colour
    // foreground colours (wbg::fg_active): the push-pull pyramid (wbg::FgLevels layout; level 0's B planes are
    // the local background, gh x gw) and its taps onto the frame
    bool fg = false;
    wbg::FgLevels fgl;
    PooledFloats fgbuf;
    Taps fgy, fgx, fgax;  // (fgax: the coarse alpha's columns sampled at the grid's)
};

// The serial part of a plan (taps, patch lists); rows are filled by plan_refine_row / plan_coarse_row.
void plan_init(const wbg_finish_args& f, Plan& P) {
    P.full = f.n_patches == 0;
    const int32_t w = f.width, hr = f.refine_h, p = P.full ? 0 : f.patch_size;
    P.n_blocks = (w + kBlock - 1) / kBlock;
    P.ty = taps(hr, f.height);
    P.tx = taps(f.refine_w, w);
    P.cover.assign((size_t)hr * P.n_blocks, P.full ? 2 : 0);
    if (!P.full) {
        P.cy = taps(f.alpha_h, f.height);
        P.cx = taps(f.alpha_w, w);
        P.start.assign((size_t)hr + 1, 0);
        P.list.resize((size_t)f.n_patches * p);
        for (int32_t k = 0; k < f.n_patches; ++k)
            for (int32_t r = 0; r < p; ++r) ++P.start[(size_t)(f.patches[2 * k] + r) + 1];
        for (int32_t y = 0; y < hr; ++y) P.start[(size_t)y + 1] += P.start[(size_t)y];
        std::vector<int32_t> fill(P.start.begin(), P.start.end() - 1);
        for (int32_t k = 0; k < f.n_patches; ++k)
            for (int32_t r = 0; r < p; ++r) P.list[(size_t)fill[(size_t)(f.patches[2 * k] + r)]++] = k;
        if (!f.prev_alpha) P.coarse_const.resize((size_t)f.alpha_h * P.n_blocks);  // (smoothing: none constant)
    }
    P.colour_row.resize(f.mode == WBG_MODE_COMPOSITE && f.background_is_colour ? (size_t)w * 3 : 0);
    for (size_t i = 0; i < P.colour_row.size(); i += 3) std::memcpy(&P.colour_row[i], f.background, 3);
    P.fg = wbg::fg_active(f);
    if (P.fg) {
        const int32_t gh = wbg::fg_cells(f.height, f.fg_cell), gw = wbg::fg_cells(w, f.fg_cell);
        P.fgl = wbg::fg_levels(gh, gw);
        P.fgbuf.reset((size_t)P.fgl.at[P.fgl.n]);
        P.fgy = taps(gh, f.height);
        P.fgx = taps(gw, w);
        P.fgax = taps(f.alpha_w, gw);
    }
}

// Foreground grid, level 0, cell rows [begin, end): each cell's weight from the coarse alpha, then, for the runs of
// cells with a weight, the byte sums (column sums over the cell's rows, then across its columns: integers, so exactly
// wbg::fg_cell's). A cell of weight 0 (inside the subject) has M = S * 0 = 0 whatever S is, so its bytes are not read.
void fg_level0_rows(const wbg_finish_args& f, Plan& P, int64_t begin, int64_t end) {
    const wbg::FgLevels& L = P.fgl;
    const int32_t gh = L.h[0], gw = L.w[0], w3 = f.width * 3;
    const int64_t plane = (int64_t)gh * gw;
    float* buf = P.fgbuf.data();
    std::vector<uint16_t> col((size_t)w3);  // (cells are at most 64 rows: 64 * 255 fits)
    std::vector<int32_t> x0s((size_t)gw + 1);
    for (int32_t j = 0; j <= gw; ++j) x0s[(size_t)j] = wbg::fg_bound(j, f.width, gw);
    const int32_t k = f.width / gw;
    // every cell k pixels wide: the cells' sums in k vector passes over the columns' sums, in 16 bits where
    // rows * k * 255 fits (checked per cell row below), else one cell at a time
    const bool uniform = k * gw == f.width;
    std::vector<uint16_t> sum(uniform ? (size_t)w3 : 0);
    const Taps& ax = P.fgax;
    for (int64_t i = begin; i < end; ++i) {
        const int32_t y0 = wbg::fg_bound((int32_t)i, f.height, gh), y1 = wbg::fg_bound((int32_t)i + 1, f.height, gh);
        const wbg::Tap ty = wbg::tap((int32_t)i, f.alpha_h, wbg::axis_scale(f.alpha_h, gh));
        float* W = buf + i * gw;
        rows::hlerp(f.alpha + (int64_t)ty.i0 * f.alpha_w, ax.i0.data(), ax.i1.data(), ax.w.data(), 1.f, W, gw);
        rows::hlerp(f.alpha + (int64_t)ty.i1 * f.alpha_w, ax.i0.data(), ax.i1.data(), ax.w.data(), 1.f,
                    W + plane, gw);  // (M's first plane as scratch: overwritten below)
        rows::fg_weights(W, W + plane, ty.w, W, gw);
        for (int32_t j = 0, e; j < gw; j = e) {
            for (e = j + 1; e < gw && (W[e] != 0.f) == (W[j] != 0.f);) ++e;
            if (W[j] == 0.f) {
                for (int32_t k = 1; k < 4; ++k) std::fill(W + k * plane + j, W + k * plane + e, 0.f);
                continue;
            }
            const int32_t xa = 3 * x0s[(size_t)j], xb = 3 * x0s[(size_t)e];
            std::fill(col.begin() + xa, col.begin() + xb, 0);
            for (int32_t y = y0; y < y1; ++y) rows::add_u8(f.frame + (int64_t)y * w3 + xa, col.data() + xa, xb - xa);
            const bool fast = uniform && (y1 - y0) * k * 255 < 65536;
            if (fast) {  // sum[m] = col[m] + col[m + 3] + ... (k terms): at m = 3 x0 + c, cell x0's channel c
                std::fill(sum.begin() + xa, sum.begin() + xb, 0);
                for (int32_t t = 0; t < k; ++t)
                    rows::add_u16(col.data() + xa + 3 * t, sum.data() + xa, xb - xa - 3 * t);
            }
            for (int32_t c = j; c < e; ++c) {
                const int32_t x0 = x0s[(size_t)c], x1 = x0s[(size_t)c + 1];
                int32_t s0 = 0, s1 = 0, s2 = 0;
                if (fast) {
                    s0 = sum[(size_t)x0 * 3];
                    s1 = sum[(size_t)x0 * 3 + 1];
                    s2 = sum[(size_t)x0 * 3 + 2];
                } else {
                    for (const uint16_t* p = col.data() + 3 * x0; p < col.data() + 3 * x1; p += 3) {
                        s0 += p[0];
                        s1 += p[1];
                        s2 += p[2];
                    }
                }
                const float wn = wbg::fdiv(W[c], (float)((y1 - y0) * (x1 - x0)));
                W[c + plane] = wbg::fmul((float)s0, wn);
                W[c + 2 * plane] = wbg::fmul((float)s1, wn);
                W[c + 3 * plane] = wbg::fmul((float)s2, wn);
            }
        }
    }
}

// Level l + 1 from level l, rows [begin, end) of level l + 1 (wbg::fg_down_cell's sums, a row at a time).
void fg_down_rows(Plan& P, int32_t l, int64_t begin, int64_t end) {
    const wbg::FgLevels& L = P.fgl;
    const int32_t h = L.h[l], w = L.w[l], wd = L.w[l + 1], pairs = w / 2;
    for (int32_t k = 0; k < 4; ++k) {
        const float* src = wbg::fg_plane(P.fgbuf.data(), L, l, k);
        float* dst = wbg::fg_plane(P.fgbuf.data(), L, l + 1, k);
        for (int64_t i = begin; i < end; ++i) {
            const float* r0 = src + 2 * i * w;
            float* o = dst + i * wd;
            if (2 * i + 1 < h)
                rows::down_pairs(r0, r0 + w, o, pairs);
            else
                rows::down_pairs1(r0, o, pairs);
            for (int32_t j = pairs; j < wd; ++j) o[j] = wbg::fg_down(src, h, w, (int32_t)i, j);  // odd last column
        }
    }
}

// Level l's B from its M and the level above, rows [begin, end): the level above's rows widened (wide: its hu rows,
// made by fg_widen), two of them blended vertically: the operations of bilerp_hv, in its order.
void fg_up_rows(Plan& P, int32_t l, const float* wide, int64_t begin, int64_t end) {
    const wbg::FgLevels& L = P.fgl;
    const int32_t h = L.h[l], w = L.w[l], hu = L.h[l + 1];
    const float ys = wbg::axis_scale(hu, h);
    std::vector<float> up((size_t)w);
    const float* W = wbg::fg_plane(P.fgbuf.data(), L, l, 0);
    for (int64_t i = begin; i < end; ++i) {
        const wbg::Tap ty = wbg::tap((int32_t)i, hu, ys);
        for (int32_t k = 0; k < 3; ++k) {
            const float* wk = wide + (int64_t)k * hu * w;
            rows::vlerp_f32(wk + (int64_t)ty.i0 * w, wk + (int64_t)ty.i1 * w, ty.w, up.data(), w);
            rows::fg_up(wbg::fg_plane(P.fgbuf.data(), L, l, 1 + k) + i * w, W + i * w, up.data(), w);
        }
    }
}

// The rest of the pyramid: down to 1 x 1 and back up (refine.cuh); rows in parallel where a level is large.
int fg_pyramid(Plan& P, int n_threads) {
    const wbg::FgLevels& L = P.fgl;
    float* buf = P.fgbuf.data();
    int status = WBG_OK;
    for (int32_t l = 0; l + 1 < L.n && status == WBG_OK; ++l)
        status = parallel_rows(L.h[l + 1], (int64_t)L.w[l + 1] * 16, n_threads,
                               [&](int64_t begin, int64_t end) { fg_down_rows(P, l, begin, end); });
    const int32_t top = L.n - 1;
    for (int32_t k = 1; k < 4; ++k)
        wbg::fg_plane(buf, L, top, k)[0] = wbg::fg_top(wbg::fg_plane(buf, L, top, k)[0], wbg::fg_plane(buf, L, top, 0)[0]);
    std::vector<float> wide;
    for (int32_t l = top - 1; l >= 0 && status == WBG_OK; --l) {
        const int32_t w = L.w[l], hu = L.h[l + 1], wu = L.w[l + 1];
        const Taps tx = taps(wu, w);
        wide.resize((size_t)3 * hu * w);
        for (int32_t k = 0; k < 3; ++k)
            for (int32_t r = 0; r < hu; ++r)
                rows::hlerp_widen(wbg::fg_plane(buf, L, l + 1, 1 + k) + (int64_t)r * wu, wu, tx.i0.data(),
                                  tx.i1.data(), tx.w.data(), wide.data() + ((int64_t)k * hu + r) * w, w);
        status = parallel_rows(L.h[l], (int64_t)w * 16, n_threads,
                               [&](int64_t begin, int64_t end) { fg_up_rows(P, l, wide.data(), begin, end); });
    }
    return status;
}

int fg_build(const wbg_finish_args& f, Plan& P, int n_threads) {
    if (!P.fg) return WBG_OK;
    const int status = parallel_rows(P.fgl.h[0], (int64_t)f.fg_cell * f.width * 3, n_threads,
                                     [&](int64_t begin, int64_t end) { fg_level0_rows(f, P, begin, end); });
    return status != WBG_OK ? status : fg_pyramid(P, n_threads);
}

// Patch coverage of refine row y per block (mark: refine_w bytes of scratch). `after_previous`: row y - 1 is done
// (by this thread), so a row under the same patches as it (the band's patches are tiles: P rows each) copies it.
void plan_refine_row(const wbg_finish_args& f, Plan& P, int64_t y, uint8_t* mark, bool after_previous) {
    if (P.full) return;
    const int32_t b = P.start[(size_t)y], e = P.start[(size_t)y + 1], p = f.patch_size;
    if (b == e) return;
    if (after_previous && P.start[(size_t)y - 1] + (e - b) == b &&
        std::equal(P.list.begin() + b, P.list.begin() + e, P.list.begin() + (b - (e - b)))) {
        std::memcpy(&P.cover[(size_t)y * P.n_blocks], &P.cover[(size_t)(y - 1) * P.n_blocks], (size_t)P.n_blocks);
        return;
    }
    std::memset(mark, 0, (size_t)f.refine_w);
    for (int32_t i = b; i < e; ++i) std::memset(mark + f.patches[2 * P.list[(size_t)i] + 1], 1, (size_t)p);
    for (int32_t bk = 0; bk < P.n_blocks; ++bk) {
        const int32_t x0 = bk * kBlock, x1 = std::min(f.width, x0 + kBlock) - 1;
        const int32_t lo = P.tx.i0[(size_t)x0], hi = P.tx.i1[(size_t)x1];
        const int32_t n = rows::count_marked(mark + lo, hi - lo + 1);
        P.cover[(size_t)y * P.n_blocks + bk] = (uint8_t)(n == 0 ? 0 : (n == hi - lo + 1 ? 2 : 1));
    }
}

void plan_coarse_row(const wbg_finish_args& f, Plan& P, int64_t y) {
    if (P.coarse_const.empty()) return;
    for (int32_t b = 0; b < P.n_blocks; ++b) {
        const int32_t x0 = b * kBlock, x1 = std::min(f.width, x0 + kBlock) - 1;
        const int32_t lo = P.cx.i0[(size_t)x0], hi = P.cx.i1[(size_t)x1];
        P.coarse_const[(size_t)y * P.n_blocks + b] = (uint8_t)rows::zeros_or_ones(f.alpha + y * f.alpha_w + lo, hi - lo + 1);
    }
}

// The plan's rows: the foreground grid, then refine rows [0, refine_h) and coarse rows, as one index space for
// parallel_rows.
int plan_rows(const wbg_finish_args& f, Plan& P, int n_threads) {
    const int64_t hr = f.refine_h, n = hr + (P.coarse_const.empty() ? 0 : f.alpha_h);
    const int status = fg_build(f, P, n_threads);
    if (status != WBG_OK) return status;
    return parallel_rows(n, (int64_t)f.refine_w / 4, n_threads, [&](int64_t begin, int64_t end) {
        std::vector<uint8_t> mark((size_t)f.refine_w);
        for (int64_t i = begin; i < end; ++i) {
            if (i < hr)
                plan_refine_row(f, P, i, mark.data(), i > begin);
            else
                plan_coarse_row(f, P, i - hr);
        }
    });
}

// The refined alpha on the refine grid, clamp(alpha_coarse + delta), on the rows patches cover (later patches
// overwrite earlier ones), NaN on their other cells; every cell in full mode. A NaN from the refiner stays NaN (in
// patches it then reads as "not refined" and the pixel takes the coarse alpha, as an uncovered one).
int refined_cells(const wbg_finish_args& f, const Plan& P, int n_threads, float* cells) {
    const int32_t hr = f.refine_h, wr = f.refine_w, p = P.full ? 0 : f.patch_size;
    return parallel_rows(hr, (int64_t)wr, n_threads, [&](int64_t begin, int64_t end) {
        std::vector<float> tmp((size_t)std::max(p, wr));
        for (int64_t y = begin; y < end; ++y) {
            float* row = cells + y * wr;
            if (P.full) {
                if (f.packed_dtype == WBG_F32 && f.delta_dtype == WBG_F32) {  // straight from the tensors
                    rows::add_clamp((const float*)f.packed + (int64_t)4 * hr * wr + y * wr,
                                    (const float*)f.delta + y * wr, row, wr);
                } else {
                    get(f.packed, f.packed_dtype, (int64_t)4 * hr * wr + y * wr, row, wr);
                    get(f.delta, f.delta_dtype, y * wr, tmp.data(), wr);
                    rows::add_clamp(row, tmp.data(), row, wr);
                }
                continue;
            }
            const int32_t b = P.start[(size_t)y], e = P.start[(size_t)y + 1];
            if (b == e) continue;
            // NaN where no patch writes, but only in the tap spans of blocks the patches cover in part: the cells
            // of other blocks are either all written or never read (a refined block has covered cells in both its
            // tap rows)
            for (int32_t bk = 0; bk < P.n_blocks; ++bk) {
                if (P.cover[(size_t)y * P.n_blocks + bk] != 1) continue;
                const int32_t x0 = bk * kBlock, x1 = std::min(f.width, x0 + kBlock) - 1;
                std::fill(row + P.tx.i0[(size_t)x0], row + P.tx.i1[(size_t)x1] + 1, wbg::nan_value());
            }
            for (int32_t i = b; i < e; ++i) {
                const int32_t k = P.list[(size_t)i], r = (int32_t)y - f.patches[2 * k];
                float* dst = row + f.patches[2 * k + 1];
                get(f.packed, f.packed_dtype, ((int64_t)k * 5 + 4) * p * p + (int64_t)r * p, dst, p);
                get(f.delta, f.delta_dtype, (int64_t)k * p * p + (int64_t)r * p, tmp.data(), p);
                rows::add_clamp(dst, tmp.data(), dst, p);
            }
        }
    });
}

// Per-thread buffers of finish_rows: the alpha row, its coarse twin, the blocks' kinds, the Q15 alpha spread, the
// output row and the widened-row caches of the refined grid and of the coarse alpha.
struct RowScratch {
    std::vector<float> arow, crow, brow[3];
    std::vector<int16_t> a3;
    std::vector<uint8_t> obuf, kind, colour;
    std::unique_ptr<BlockRows> refined, coarse, fgb[3];

    RowScratch(const wbg_finish_args& f, const Plan& P, const float* cells)
        : arow((size_t)f.width), crow(P.full ? 0 : (size_t)f.width), a3((size_t)kBlock * 4),
          obuf((size_t)f.width * 4), kind((size_t)P.n_blocks), colour(P.fg ? (size_t)f.width * 3 : 0) {
        if (cells) refined.reset(new BlockRows(cells, f.refine_w, P.ty, P.tx, f.width, P.n_blocks));
        if (!P.full) coarse.reset(new BlockRows(f.alpha, f.alpha_w, P.cy, P.cx, f.width, P.n_blocks));
        for (int32_t k = 0; P.fg && k < 3; ++k) {  // the local background, level 0's B planes
            brow[k].resize((size_t)f.width);
            const float* b = P.fgbuf.data() + P.fgl.at[0] + (int64_t)(1 + k) * P.fgl.h[0] * P.fgl.w[0];
            fgb[k].reset(new BlockRows(b, P.fgl.w[0], P.fgy, P.fgx, f.width, P.n_blocks));
        }
    }

    // The colours of output row y's block b for the outputs: the frame's row, or (foreground colours, a block of a
    // soft kind with a soft pixel) `colour` with the block made. Index both with x * 3.
    const uint8_t* colours(const Plan& P, int32_t y, const uint8_t* fr, const float* a, int32_t b, int32_t w) {
        const int32_t x0 = b * kBlock, n = std::min(w - x0, kBlock);
        // alpha exactly 0 or 1, or all 0 / 255 once quantised (most blocks of the coarse alpha's tails): the frame's
        if (!P.fg || kind[(size_t)b] <= kOne || !rows::any_soft(a + x0, n)) return fr;
        for (int32_t k = 0; k < 3; ++k) fgb[k]->row(y, b, x0, n, brow[k].data());
        rows::fg_colours(fr + 3 * x0, a + x0, brow[0].data() + x0, brow[1].data() + x0, brow[2].data() + x0,
                         colour.data() + 3 * x0, n);
        return colour.data();
    }
};

bool in_part(uint8_t kind, int part) { return (part & (kind == kRefined ? kPartRefined : kPartCoarse)) != 0; }

// Output rows [begin, end), the blocks of `part` only (cells: the refined grid, NULL when part is kPartCoarse).
// Each pixel is computed by the same operations whichever part makes it, so parts made apart give the same bits as
// one pass.
void finish_rows(const wbg_finish_args& f, const Plan& P, int part, int64_t begin, int64_t end, RowScratch& s) {
    const int32_t w = f.width, nb = P.n_blocks;
    float* a = s.arow.data();
    uint8_t* kind = s.kind.data();
    for (int64_t y = begin; y < end; ++y) {
        const uint8_t* r0 = P.cover.data() + (size_t)P.ty.i0[(size_t)y] * nb;
        const uint8_t* r1 = P.cover.data() + (size_t)P.ty.i1[(size_t)y] * nb;
        const bool consts = !P.coarse_const.empty();
        const uint8_t* c0 = consts ? P.coarse_const.data() + (size_t)P.cy.i0[(size_t)y] * nb : nullptr;
        const uint8_t* c1 = consts ? P.coarse_const.data() + (size_t)P.cy.i1[(size_t)y] * nb : nullptr;
        bool any = false;
        for (int32_t b = 0; b < nb; ++b) {
            if (r0[b] && r1[b])  // else a tap row without a refined cell: every pixel takes the coarse alpha
                kind[b] = kRefined;
            else if (c0 && c0[b] == c1[b] && c0[b] < 2)
                kind[b] = c0[b];
            else
                kind[b] = kCoarse;
            any |= in_part(kind[b], part);
        }
        if (!any) continue;
        for (int32_t b = 0; b < nb; ++b) {
            if (!in_part(kind[b], part)) continue;
            const int32_t x0 = b * kBlock, n = std::min(w - x0, kBlock);
            if (kind[b] <= kOne) {
                std::fill(a + x0, a + x0 + n, (float)kind[b]);
                continue;
            }
            if (kind[b] == kRefined) {
                s.refined->row((int32_t)y, b, x0, n, a);
                // the patch rule: a pixel with an uncovered tap (NaN) takes the coarse alpha; so does one whose taps
                // the refiner made NaN (checked even in covered blocks: it decides the same as coverage would)
                if (!P.full && (r0[b] != 2 || r1[b] != 2 || rows::count_numbers(a + x0, n) != n)) {
                    s.coarse->row((int32_t)y, b, x0, n, s.crow.data());
                    rows::fill_nan(a + x0, s.crow.data() + x0, n);
                }
            } else {
                s.coarse->row((int32_t)y, b, x0, n, a);
            }
            const int64_t pix = y * w + x0;
            if (f.prev_alpha)  // prev_alpha may alias out_alpha: it is read here, before the block is written
                rows::smooth_clamp(a + x0, f.prev_alpha + pix, f.smoothing, a + x0, n);
            else
                rows::clamp(a + x0, a + x0, n);
        }
        // Final alpha and the u8 output are built in L1-resident row buffers and streamed out with non-temporal
        // stores, in runs of consecutive blocks of this part: the outputs are frame-sized and read later by the
        // sink, so writing them around the cache saves the read-for-ownership traffic.
        const int64_t pix = y * w;
        const uint8_t* fr = f.frame + pix * 3;
        uint8_t* ob = s.obuf.data();
        for (int32_t b = 0, e; b < nb; b = e) {
            for (e = b + 1; e < nb && in_part(kind[e], part) == in_part(kind[b], part);) ++e;
            if (!in_part(kind[b], part)) continue;
            const int32_t x0 = b * kBlock, n = std::min(w, e * kBlock) - x0;
            if (f.out_alpha) stream_copy(f.out_alpha + pix + x0, a + x0, sizeof(float) * (size_t)n);
            switch (f.mode) {
                case WBG_MODE_ALPHA:
                    rows::quantise(a + x0, ob + x0, n);
                    stream_copy(f.out + pix + x0, ob + x0, (size_t)n);
                    break;
                case WBG_MODE_RGBA:
                    if (!P.fg) {
                        rows::rgba(fr + 3 * x0, a + x0, ob + 4 * x0, n);
                    } else {
                        for (int32_t c = b; c < e; ++c) {
                            const int32_t cx0 = c * kBlock, cn = std::min(w - cx0, kBlock);
                            rows::rgba(s.colours(P, (int32_t)y, fr, a, c, w) + 3 * cx0, a + cx0, ob + 4 * cx0, cn);
                        }
                    }
                    stream_copy(f.out + (pix + x0) * 4, ob + 4 * x0, (size_t)n * 4);
                    break;
                case WBG_MODE_COMPOSITE: {
                    const uint8_t* bg = f.background_is_colour ? P.colour_row.data() : f.background + pix * 3;
                    for (int32_t c = b, ce; c < e; c = ce) {  // runs of blocks of one kind
                        for (ce = c + 1; ce < e && kind[ce] == kind[c];) ++ce;
                        const int32_t cx0 = c * kBlock, cn = std::min(w, ce * kBlock) - cx0;
                        if (kind[c] <= kOne) {  // the frame's or the background's bytes, straight to the output
                            stream_copy(f.out + (pix + cx0) * 3, (kind[c] ? fr : bg) + 3 * cx0, 3 * (size_t)cn);
                            continue;
                        }
                        for (int32_t x = cx0; x < cx0 + cn; x += kBlock) {  // alpha spread over the three channels:
                            const int32_t m = std::min(kBlock, cx0 + cn - x);  // one unit-stride byte blend
                            const uint8_t* src = s.colours(P, (int32_t)y, fr, a, x / kBlock, w);
                            rows::spread3_q15(a + x, s.a3.data() + 3 * kBlock, s.a3.data(), m);
                            rows::composite_bytes(src + 3 * x, bg + 3 * x, s.a3.data(), ob + 3 * x, 3 * m);
                        }
                        stream_copy(f.out + (pix + cx0) * 3, ob + 3 * cx0, 3 * (size_t)cn);
                    }
                    break;
                }
                default:
                    break;
            }
        }
    }
    stream_fence();  // non-temporal stores are weakly ordered: complete them before the rows count as done
}

std::unique_ptr<float[]> alloc_cells(const wbg_finish_args& f) {
    return std::unique_ptr<float[]>(new (std::nothrow) float[(size_t)f.refine_h * f.refine_w]);
}

int finish(const wbg_finish_args& f, int n_threads) {
    Plan P;
    plan_init(f, P);
    int status = plan_rows(f, P, n_threads);
    if (status != WBG_OK) return status;
    std::unique_ptr<float[]> cells = alloc_cells(f);
    if (!cells) return WBG_ERR_ALLOC;
    status = refined_cells(f, P, n_threads, cells.get());
    if (status != WBG_OK) return status;
    return parallel_rows(f.height, (int64_t)f.width * 2, n_threads, [&](int64_t begin, int64_t end) {
        RowScratch s(f, P, cells.get());
        finish_rows(f, P, kPartAll, begin, end, s);
    });
}

// ------------------------------------------------------------------------------------------------------------------
// Finish in two calls (wbg_refine_finish_begin_cpu / _end_cpu): the blocks that read no refined cell depend only on
// the frame, the coarse alpha and the patch origins, so `begin` hands them to a background thread at the lowest
// priority (nice 19), where they fill the cores the refiner leaves idle between its operators; `end`, given the
// refiner's output, takes over every row the background has not started, makes the refined blocks, and waits only
// for the few rows the background is in the middle of.

struct Job {
    wbg_finish_args f;                     // packed / delta are set by end
    Plan plan;
    std::atomic<int> plan_state{0};        // 0 = not started, 1 = being built (by whoever claimed it), 2 = ready
    std::atomic<int64_t> next{0};          // next chunk of rows whose coarse part is still to be made
    int64_t n_chunks = 0, chunk = 0;
    std::atomic<int> state{0};             // 0 = queued, 1 = the background works on it, 2 = the background is done
    std::atomic<int> status{WBG_OK};
    std::mutex m;
    std::condition_variable cv;
};

void build_plan(Job& j, Plan& P) {  // serially: the background thread has one core at most
    plan_init(j.f, P);
    if (fg_build(j.f, P, 1) != WBG_OK) throw std::bad_alloc();
    std::vector<uint8_t> mark((size_t)j.f.refine_w);
    for (int64_t y = 0; y < j.f.refine_h; ++y) plan_refine_row(j.f, P, y, mark.data(), y > 0);
    for (int64_t y = 0; y < (P.coarse_const.empty() ? 0 : j.f.alpha_h); ++y) plan_coarse_row(j.f, P, y);
}

// One low-priority thread running the coarse part of begun finishes, in order (re-created in a forked child).
class Background {
  public:
    static Background& get() {
        static std::mutex create;
        static Background* bg = nullptr;
        std::lock_guard<std::mutex> lock(create);
        if (!bg || bg->pid_ != getpid()) bg = new Background();  // leaked, like Pool (threads may outlive exit)
        return *bg;
    }

    bool submit(const std::shared_ptr<Job>& j) {
        std::lock_guard<std::mutex> lock(m_);
        if (!started_) {
            try {
                std::thread(&Background::loop, this).detach();
            } catch (...) {
                return false;  // no thread: end makes everything
            }
            started_ = true;
        }
        q_.push_back(j);
        cv_.notify_one();
        return true;
    }

  private:
    Background() : pid_(getpid()) {}

    void loop() {
#if defined(__linux__)
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);  // this thread only; lowering is always allowed
        pthread_setname_np(pthread_self(), "wbg-finish-bg");       // (top, perf)
#endif
        for (;;) {
            std::shared_ptr<Job> j;
            {
                std::unique_lock<std::mutex> lock(m_);
                cv_.wait(lock, [&] { return !q_.empty(); });
                j = std::move(q_.front());
                q_.pop_front();
            }
            int queued = 0;
            if (!j->state.compare_exchange_strong(queued, 1)) continue;  // end came first: nothing to do
            run(*j);
            {
                std::lock_guard<std::mutex> lock(j->m);
                j->state = 2;
            }
            j->cv.notify_all();
        }
    }

    static void run(Job& j) {
        try {
            int idle = 0;
            if (!j.plan_state.compare_exchange_strong(idle, 1)) return;  // end builds it: end is under way
            build_plan(j, j.plan);
            j.plan_state = 2;
            RowScratch s(j.f, j.plan, nullptr);
            for (int64_t c; (c = j.next.fetch_add(1)) < j.n_chunks;)
                finish_rows(j.f, j.plan, kPartCoarse, c * j.chunk, std::min<int64_t>(j.f.height, (c + 1) * j.chunk), s);
        } catch (...) {
            j.status = WBG_ERR_ALLOC;
        }
    }

    const pid_t pid_;
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<std::shared_ptr<Job>> q_;
    bool started_ = false;
};

bool out_overlaps_frame(const wbg_finish_args& f) {
    const uintptr_t o = (uintptr_t)f.out, fr = (uintptr_t)f.frame, px = (uintptr_t)f.height * (uintptr_t)f.width;
    const uintptr_t o_end = o + px * (f.mode == WBG_MODE_RGBA ? 4 : 3), fr_end = fr + px * 3;
    return o < fr_end && fr < o_end;
}

// Waits until the background is done with j (or never starts it).
void settle(Job& j) {
    int queued = 0;
    if (j.state.compare_exchange_strong(queued, 2)) return;
    std::unique_lock<std::mutex> lock(j.m);
    j.cv.wait(lock, [&] { return j.state.load() == 2; });
}

int finish_end(Job& j, int n_threads) {
    const wbg_finish_args& f = j.f;
    // Rows from `first` on are all ours (whole rows in one pass); the background stops at its current chunk.
    const int64_t first = std::min(j.next.exchange(j.n_chunks), j.n_chunks) * j.chunk;
    const Plan* P = &j.plan;
    Plan own;
    int idle = 0;
    if (j.plan_state.compare_exchange_strong(idle, 1)) {  // the background never started: build it here
        plan_init(f, j.plan);
        int status = plan_rows(f, j.plan, n_threads);
        if (status != WBG_OK) return status;
        j.plan_state = 2;
    } else if (j.plan_state.load() != 2) {  // the background is building it: build our own rather than wait
        plan_init(f, own);
        int status = plan_rows(f, own, n_threads);
        if (status != WBG_OK) return status;
        P = &own;
    }
    std::unique_ptr<float[]> cells = alloc_cells(f);
    if (!cells) return WBG_ERR_ALLOC;
    int status = refined_cells(f, *P, n_threads, cells.get());
    if (status != WBG_OK) return status;
    const int64_t h = f.height;
    status = parallel_rows(h, (int64_t)f.width * 2, n_threads, [&](int64_t begin, int64_t end) {
        RowScratch s(f, *P, cells.get());
        if (begin < first) finish_rows(f, *P, kPartRefined, begin, std::min(end, first), s);
        if (end > first) finish_rows(f, *P, kPartAll, std::max(begin, first), end, s);
    });
    settle(j);  // the rows the background was making when we took over
    return status != WBG_OK ? status : j.status.load();
}

}  // namespace

extern "C" {

int wbg_refine_abi_version(void) { return WBG_REFINE_ABI_VERSION; }

const char* wbg_refine_status_string(int status) { return wbg::status_string(status); }

size_t wbg_refine_foreground_workspace_bytes(int32_t height, int32_t width, int32_t fg_cell) {
    return wbg::fg_workspace_bytes(height, width, fg_cell);
}

int wbg_refine_pack_cpu(const wbg_pack_args* args, int n_threads) {
    int s = wbg::check_pack(args);
    if (s == WBG_OK && args->n_patches)
        s = wbg::check_origins(args->patches, args->n_patches, args->patch_size, args->refine_h, args->refine_w);
    if (s != WBG_OK) return s;
    try {
        return pack(*args, n_threads);
    } catch (const std::bad_alloc&) {
        return WBG_ERR_ALLOC;
    } catch (...) {
        return WBG_ERR_ARG;
    }
}

int wbg_refine_finish_cpu(const wbg_finish_args* args, int n_threads) {
    int s = wbg::check_finish(args);
    if (s == WBG_OK && args->n_patches)
        s = wbg::check_origins(args->patches, args->n_patches, args->patch_size, args->refine_h, args->refine_w);
    if (s != WBG_OK) return s;
    try {
        return finish(*args, n_threads);
    } catch (const std::bad_alloc&) {
        return WBG_ERR_ALLOC;
    } catch (...) {
        return WBG_ERR_ARG;
    }
}

wbg_finish_job* wbg_refine_finish_begin_cpu(const wbg_finish_args* args, int* status) {
    int s = wbg::check_finish(args, false);
    if (s == WBG_OK && args->n_patches)
        s = wbg::check_origins(args->patches, args->n_patches, args->patch_size, args->refine_h, args->refine_w);
    if (status) *status = s;
    if (s != WBG_OK) return nullptr;
    try {
        auto j = std::make_shared<Job>();
        j->f = *args;
        j->f.packed = j->f.delta = nullptr;
        j->chunk = 4;
        j->n_chunks = (args->height + j->chunk - 1) / j->chunk;
        // full grid: every block reads refined cells. Foreground colours with an output over the frame: end may
        // build its own grid (reading the frame) while the background writes rows, so all is left to end.
        if (args->n_patches == 0 || (wbg::fg_active(*args) && out_overlaps_frame(*args)) ||
            !Background::get().submit(j))
            j->state = 2;
        return reinterpret_cast<wbg_finish_job*>(new std::shared_ptr<Job>(std::move(j)));
    } catch (...) {
        if (status) *status = WBG_ERR_ALLOC;
        return nullptr;
    }
}

int wbg_refine_finish_end_cpu(wbg_finish_job* job, const void* packed, int32_t packed_dtype, const void* delta,
                              int32_t delta_dtype, int n_threads) {
    if (!job) return WBG_ERR_NULL;
    std::unique_ptr<std::shared_ptr<Job>> handle(reinterpret_cast<std::shared_ptr<Job>*>(job));
    Job& j = **handle;
    if (!packed || !delta) {  // cancel: nothing more is written once this returns
        j.next.exchange(j.n_chunks);
        settle(j);
        return WBG_OK;
    }
    j.f.packed = packed;
    j.f.packed_dtype = packed_dtype;
    j.f.delta = delta;
    j.f.delta_dtype = delta_dtype;
    int s = wbg::check_finish(&j.f);
    try {
        if (s == WBG_OK) return finish_end(j, n_threads);
    } catch (const std::bad_alloc&) {
        s = WBG_ERR_ALLOC;
    } catch (...) {
        s = WBG_ERR_ARG;
    }
    j.next.exchange(j.n_chunks);  // failed: still never return while the background writes
    settle(j);
    return s;
}

int wbg_frame_planes_cpu(const uint8_t* frame, int32_t height, int32_t width, void* out, int32_t out_h,
                         int32_t out_w, int32_t out_dtype, int n_threads) {
    if (!frame || !out) return WBG_ERR_NULL;
    if (height < 1 || width < 1 || out_h < 1 || out_w < 1) return WBG_ERR_SIZE;
    if (out_dtype != WBG_F32 && out_dtype != WBG_F16) return WBG_ERR_ARG;
    try {
        return frame_planes(frame, height, width, out, out_h, out_w, out_dtype, n_threads);
    } catch (const std::bad_alloc&) {
        return WBG_ERR_ALLOC;
    } catch (...) {
        return WBG_ERR_ARG;
    }
}

}  // extern "C"
