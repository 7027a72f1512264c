// CPU implementation of the fused refine op (math in refine.cuh, ABI in wbg_refine.h).
//
// Rows are split into contiguous blocks over std::thread workers (created per call: no pool, no spinning threads
// that would compete with ONNX Runtime's). Horizontal taps are precomputed once per call into tables, so the inner
// loops are table lookups plus a few multiply-adds over contiguous output.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <new>
#include <thread>
#include <vector>

#include "refine.cuh"

namespace {

using wbg::Tap;

std::vector<Tap> taps(int32_t n_in, int32_t n_out) {
    std::vector<Tap> t((size_t)n_out);
    const float scale = wbg::axis_scale(n_in, n_out);
    for (int32_t i = 0; i < n_out; ++i) t[(size_t)i] = wbg::tap(i, n_in, scale);
    return t;
}

// Runs fn(begin, end) over [0, n) in up to n_threads contiguous blocks; small jobs stay on the calling thread.
// Returns WBG_OK, or WBG_ERR_ALLOC when a block ran out of memory (no exception escapes a worker).
template <class Fn>
int parallel_rows(int64_t n, int64_t work_per_row, int n_threads, Fn fn) {
    const int64_t min_work = 1 << 15;  // below ~32k pixels per thread, a thread start costs more than it saves
    int64_t t = std::min<int64_t>(n_threads < 1 ? 1 : n_threads, n);
    t = std::min<int64_t>(t, std::max<int64_t>(1, n * work_per_row / min_work));
    std::atomic<int> status{WBG_OK};
    auto guarded = [&](int64_t b, int64_t e) {
        try {
            fn(b, e);
        } catch (...) {
            status = WBG_ERR_ALLOC;
        }
    };
    std::vector<std::thread> workers;
    if (t > 1) workers.reserve((size_t)t - 1);
    for (int64_t k = 1; k < t; ++k) {
        const int64_t b = n * k / t, e = n * (k + 1) / t;
        try {
            workers.emplace_back(guarded, b, e);
        } catch (...) {  // cannot start a thread: do the block here
            guarded(b, e);
        }
    }
    guarded(0, n / t);
    for (auto& w : workers) w.join();
    return status;
}

int pack(const wbg_pack_args& a, int n_threads) {
    const bool full = a.n_patches == 0;
    const int32_t n = full ? 1 : a.n_patches;
    const int32_t ph = full ? a.refine_h : a.patch_size, pw = full ? a.refine_w : a.patch_size;
    // Taps over the whole virtual grid; patches index into them.
    const std::vector<Tap> fy = taps(a.height, a.refine_h), fx = taps(a.width, a.refine_w);
    const std::vector<Tap> ay = taps(a.alpha_h, a.refine_h), ax = taps(a.alpha_w, a.refine_w);
    std::vector<Tap> dy, dx;
    if (a.depth) {
        dy = taps(a.depth_h, a.refine_h);
        dx = taps(a.depth_w, a.refine_w);
    }
    const int64_t plane = (int64_t)ph * pw;
    return parallel_rows((int64_t)n * ph, pw * 8, n_threads, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
            const int32_t k = (int32_t)(r / ph), row = (int32_t)(r % ph);
            const int32_t y = (full ? 0 : a.patches[2 * k]) + row, x_org = full ? 0 : a.patches[2 * k + 1];
            const int64_t o = (int64_t)k * 5 * plane + (int64_t)row * pw;  // offset of this row in plane 0
            const Tap ty = fy[(size_t)y];
            const uint8_t* f0 = a.frame + (int64_t)ty.i0 * a.width * 3;
            const uint8_t* f1 = a.frame + (int64_t)ty.i1 * a.width * 3;
            for (int32_t c = 0; c < pw; ++c) {
                const Tap tx = fx[(size_t)(x_org + c)];
                const int32_t x0 = tx.i0 * 3, x1 = tx.i1 * 3;
                // BGR in, RGB planes out
                wbg::store(a.out, a.out_dtype, o + c, wbg::sample_u8(f0 + 2, f1 + 2, x0, x1, ty.w, tx.w));
                wbg::store(a.out, a.out_dtype, o + plane + c, wbg::sample_u8(f0 + 1, f1 + 1, x0, x1, ty.w, tx.w));
                wbg::store(a.out, a.out_dtype, o + 2 * plane + c, wbg::sample_u8(f0, f1, x0, x1, ty.w, tx.w));
            }
            if (a.depth) {
                const Tap t = dy[(size_t)y];
                const float* d0 = a.depth + (int64_t)t.i0 * a.depth_w;
                const float* d1 = a.depth + (int64_t)t.i1 * a.depth_w;
                for (int32_t c = 0; c < pw; ++c) {
                    const Tap tx = dx[(size_t)(x_org + c)];
                    wbg::store(a.out, a.out_dtype, o + 3 * plane + c, wbg::sample_f32(d0, d1, tx.i0, tx.i1, t.w, tx.w));
                }
            } else {
                for (int32_t c = 0; c < pw; ++c) wbg::store(a.out, a.out_dtype, o + 3 * plane + c, 0.f);
            }
            const Tap t = ay[(size_t)y];
            const float* a0 = a.alpha + (int64_t)t.i0 * a.alpha_w;
            const float* a1 = a.alpha + (int64_t)t.i1 * a.alpha_w;
            for (int32_t c = 0; c < pw; ++c) {
                const Tap tx = ax[(size_t)(x_org + c)];
                wbg::store(a.out, a.out_dtype, o + 4 * plane + c, wbg::sample_f32(a0, a1, tx.i0, tx.i1, t.w, tx.w));
            }
        }
    });
}

// clamp(alpha_coarse + delta, 0, 1) of `count` consecutive cells starting at element `i` of a patch plane.
inline void refined_cells(const wbg_finish_args& f, int64_t i_packed, int64_t i_delta, int32_t count, float* dst) {
    if (f.packed_dtype == WBG_F32 && f.delta_dtype == WBG_F32) {  // the common case, kept branch-free
        const float* p = (const float*)f.packed + i_packed;
        const float* d = (const float*)f.delta + i_delta;
        for (int32_t c = 0; c < count; ++c) dst[c] = wbg::clamp01(p[c] + d[c]);
        return;
    }
    for (int32_t c = 0; c < count; ++c)
        dst[c] = wbg::clamp01(wbg::load(f.packed, f.packed_dtype, i_packed + c) +
                              wbg::load(f.delta, f.delta_dtype, i_delta + c));
}

int finish(const wbg_finish_args& f, int n_threads) {
    const bool full = f.n_patches == 0;
    const int32_t hr = f.refine_h, wr = f.refine_w;
    // Patch mode: build the refined grid first (NaN = not covered; later patches overwrite earlier ones).
    std::vector<float> grid;
    if (!full) {
        const int32_t p = f.patch_size;
        grid.assign((size_t)hr * wr, wbg::nan_value());
        for (int32_t k = 0; k < f.n_patches; ++k) {
            const int32_t y = f.patches[2 * k], x = f.patches[2 * k + 1];
            for (int32_t r = 0; r < p; ++r)
                refined_cells(f, ((int64_t)k * 5 + 4) * p * p + (int64_t)r * p, (int64_t)k * p * p + (int64_t)r * p,
                              p, grid.data() + (int64_t)(y + r) * wr + x);
        }
    }
    const std::vector<Tap> ty = taps(hr, f.height), tx = taps(wr, f.width);
    std::vector<Tap> cy, cx;
    if (!full) {
        cy = taps(f.alpha_h, f.height);
        cx = taps(f.alpha_w, f.width);
    }
    return parallel_rows(f.height, f.width * 2, n_threads, [&](int64_t begin, int64_t end) {
        // Per thread: the two refine rows this output row samples, and their vertical lerp.
        std::vector<float> r0((size_t)wr), r1((size_t)wr), v((size_t)wr);
        int32_t have0 = -1, have1 = -1;
        auto fetch = [&](int32_t y, std::vector<float>& dst, int32_t& have) {
            if (have == y) return;
            if (full)
                refined_cells(f, (int64_t)4 * hr * wr + (int64_t)y * wr, (int64_t)y * wr, wr, dst.data());
            else
                std::copy(grid.begin() + (int64_t)y * wr, grid.begin() + (int64_t)(y + 1) * wr, dst.begin());
            have = y;
        };
        for (int64_t y = begin; y < end; ++y) {
            const Tap t = ty[(size_t)y];
            // reuse rows already fetched for the previous output row (upsampling revisits them)
            if (have1 == t.i0 && have0 != t.i0) {
                std::swap(r0, r1);
                std::swap(have0, have1);
            }
            fetch(t.i0, r0, have0);
            fetch(t.i1, r1, have1);
            const float* p0 = r0.data();
            const float* p1 = r1.data();
            float* pv = v.data();
            for (int32_t x = 0; x < wr; ++x) pv[x] = wbg::lerp(p0[x], p1[x], t.w);
            const int64_t row = y * f.width;
            const Tap* ptx = tx.data();
            for (int32_t x = 0; x < f.width; ++x) {
                float a = wbg::lerp(pv[ptx[x].i0], pv[ptx[x].i1], ptx[x].w);
                if (!full && std::isnan(a)) {
                    const Tap c = cy[(size_t)y], d = cx[(size_t)x];
                    const float* q0 = f.alpha + (int64_t)c.i0 * f.alpha_w;
                    const float* q1 = f.alpha + (int64_t)c.i1 * f.alpha_w;
                    a = wbg::sample_f32(q0, q1, d.i0, d.i1, c.w, d.w);
                }
                wbg::finish_pixel(a, f, row + x);
            }
        }
    });
}

}  // namespace

extern "C" {

int wbg_refine_abi_version(void) { return WBG_REFINE_ABI_VERSION; }

const char* wbg_refine_status_string(int status) { return wbg::status_string(status); }

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

}  // extern "C"
