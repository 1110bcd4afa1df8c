// prunekit sparse-times-dense kernels for Linear layers (and 1x1 convolutions).
//
// Storage (built by prunekit/sparse_runtime/formats.py, spec in docs/sparse-inference.md):
//   W [N, K] is split into groups of R consecutive rows (R = 1 or 4) and chunks of 16
//   columns. For each group, one bit per C columns (C = 1, 4 or 16) says whether the
//   columns are kept; the kept values are packed group by group, chunk by chunk, row by
//   row inside the chunk. group_ptr[g] is where group g's values start.
//   Values are float32, bfloat16 or int8 (with a float32 scale per output row).
//
// y[b, n] = sum_k W[n, k] * x[b, k] (* scale[n]) (+ bias[n]).
//
// Two kernels:
//   expand  - on that storage: for each chunk, load the packed values and expand them to their columns with
//             the chunk's 16-bit mask (AVX-512 VBMI2 vexpand), FMA with x. Reads each weight
//             byte once; best at batch 1-8.
//   index   - (rows=1 only) a 16-bit column index per value instead of the bitmask, passed
//             in place of the mask; AVX-512 gathers x.
//             Work and bytes per non-zero: best at 80-99% sparsity.
// Each has an AVX-512 path, an AVX2 path and a portable scalar path, picked at run time.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// ---------------------------------------------------------------- values -> float
template <typename V> inline float to_float(V v);
template <> inline float to_float<float>(float v) { return v; }
template <> inline float to_float<uint16_t>(uint16_t v) {  // bfloat16 bits
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
template <> inline float to_float<int8_t>(int8_t v) { return static_cast<float>(v); }

// ---------------------------------------------------------------- mask of one chunk
struct NibbleTable {
  uint16_t v[16];
  constexpr NibbleTable() : v() {
    for (int n = 0; n < 16; ++n) {
      uint16_t m = 0;
      for (int i = 0; i < 4; ++i)
        if (n & (1 << i)) m |= static_cast<uint16_t>(0xF << (4 * i));
      v[n] = m;
    }
  }
};
constexpr NibbleTable kNibble;

// 16-bit element mask of chunk c; bit j = column 16c + j is stored.
template <int C> inline uint32_t chunk_mask(const uint8_t* m, int64_t c);
template <> inline uint32_t chunk_mask<1>(const uint8_t* m, int64_t c) {
  uint16_t v;
  std::memcpy(&v, m + 2 * c, 2);
  return v;
}
template <> inline uint32_t chunk_mask<4>(const uint8_t* m, int64_t c) {
  return kNibble.v[(m[c >> 1] >> ((c & 1) * 4)) & 0xF];
}
template <> inline uint32_t chunk_mask<16>(const uint8_t* m, int64_t c) {
  return ((m[c >> 3] >> (c & 7)) & 1) ? 0xFFFFu : 0u;
}

struct Problem {
  const void* values;
  const uint8_t* mask;
  const int64_t* group_ptr;
  const float* scale;  // may be null
  const float* bias;   // may be null
  const float* x;      // [B, K]
  float* y;            // [B, N]
  int64_t B, K, N, mask_stride;
};

inline void store(const Problem& p, int64_t n, int64_t b, float acc) {
  float v = p.scale ? acc * p.scale[n] : acc;
  if (p.bias) v += p.bias[n];
  p.y[b * p.N + n] = v;
}

// ---------------------------------------------------------------- portable kernels
// Visit every stored weight of group g: f(column, row in the group, value). The one walk
// over the bitmask that the portable product and the portable unpack share.
template <typename V, int R, int C, typename F>
inline void for_each_stored(const Problem& p, int64_t g, F&& f) {
  const V* v = static_cast<const V*>(p.values) + p.group_ptr[g];
  const uint8_t* mask = p.mask + g * p.mask_stride;
  const int64_t chunks = (p.K + 15) / 16;
  for (int64_t c = 0; c < chunks; ++c) {
    uint32_t m = chunk_mask<C>(mask, c);
    const int cnt = __builtin_popcount(m);
    int i = 0;
    while (m) {
      const int64_t k = 16 * c + __builtin_ctz(m);
      m &= m - 1;
      if (k < p.K)  // block padding past the last column holds zeros
        for (int r = 0; r < R; ++r) f(k, r, to_float<V>(v[r * cnt + i]));
      ++i;
    }
    v += R * cnt;
  }
}

template <typename V, int R, int C>
void expand_scalar(const Problem& p, int64_t g) {
  for (int64_t b = 0; b < p.B; ++b) {
    const float* x = p.x + b * p.K;
    float acc[R] = {};
    for_each_stored<V, R, C>(p, g, [&](int64_t k, int r, float w) { acc[r] += w * x[k]; });
    for (int r = 0; r < R; ++r) store(p, g * R + r, b, acc[r]);
  }
}

// ---------------------------------------------------------------- AVX-512 kernels
#define PK_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512vbmi2,bmi,bmi2,popcnt")))

template <typename V> PK_AVX512 inline __m512 expand16(const V* p, __mmask16 m);
template <> PK_AVX512 inline __m512 expand16<float>(const float* p, __mmask16 m) {
  __m512 raw = _mm512_loadu_ps(p);
  asm("" : "+v"(raw));  // keep the register form of vexpandps: the memory form is slower on Intel cores
  return _mm512_maskz_expand_ps(m, raw);
}
template <> PK_AVX512 inline __m512 expand16<uint16_t>(const uint16_t* p, __mmask16 m) {
  __m256i e = _mm256_maskz_expand_epi16(m, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(e), 16));
}
template <> PK_AVX512 inline __m512 expand16<int8_t>(const int8_t* p, __mmask16 m) {
  __m128i e = _mm_maskz_expand_epi8(m, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(e));
}
// A full chunk (C == 16 and the chunk kept): no expand needed.
template <typename V> PK_AVX512 inline __m512 load16(const V* p) { return expand16<V>(p, 0xFFFF); }
template <> PK_AVX512 inline __m512 load16<float>(const float* p) { return _mm512_loadu_ps(p); }

// One chunk of one group: expand the R rows' values and FMA them with BT rows of x.
template <typename V, int R, int C, int BT>
PK_AVX512 inline void expand_step(const Problem& p, const uint8_t* mask, const float* x, int64_t c, const V*& v,
                                  __m512 (&acc)[R][BT]) {
  const uint32_t m = chunk_mask<C>(mask, c);
  if (C == 16 && m == 0) return;
  const __mmask16 km = static_cast<__mmask16>(m);
  __m512 xv[BT];
  for (int b = 0; b < BT; ++b) xv[b] = _mm512_maskz_loadu_ps(km, x + b * p.K + 16 * c);
  const int cnt = (C == 16) ? 16 : _mm_popcnt_u32(m);
  for (int r = 0; r < R; ++r) {
    const __m512 w = (C == 16) ? load16<V>(v + r * cnt) : expand16<V>(v + r * cnt, km);
    for (int b = 0; b < BT; ++b) acc[r][b] = _mm512_fmadd_ps(w, xv[b], acc[r][b]);
  }
  v += R * cnt;
}

// One group of R rows times a tile of BT batch rows, U independent accumulator sets so
// that the FMA latency does not serialise a batch-1 row.
template <typename V, int R, int C, int BT>
PK_AVX512 void expand_tile(const Problem& p, int64_t g, int64_t b0) {
  constexpr int U = (R * BT >= 4) ? 1 : 4 / (R * BT);
  const V* v = static_cast<const V*>(p.values) + p.group_ptr[g];
  const uint8_t* mask = p.mask + g * p.mask_stride;
  const int64_t chunks = (p.K + 15) / 16;
  const float* x = p.x + b0 * p.K;
  __m512 acc[U][R][BT];
  for (int u = 0; u < U; ++u)
    for (int r = 0; r < R; ++r)
      for (int b = 0; b < BT; ++b) acc[u][r][b] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + U <= chunks; c += U)
    for (int u = 0; u < U; ++u) expand_step<V, R, C, BT>(p, mask, x, c + u, v, acc[u]);
  for (; c < chunks; ++c) expand_step<V, R, C, BT>(p, mask, x, c, v, acc[0]);
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < BT; ++b) {
      __m512 s = acc[0][r][b];
      for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, acc[u][r][b]);
      store(p, g * R + r, b0 + b, _mm512_reduce_add_ps(s));
    }
}

// Batch 1, one row, bit-per-column mask: four chunks per step with one 64-bit mask read,
// offsets from prefix popcounts (one pointer update per step), four accumulators.
template <typename V>
PK_AVX512 float expand_row1(const V* v, const uint8_t* mask, const float* x, int64_t K) {
  const int64_t chunks = (K + 15) / 16;
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 4 <= chunks && 16 * (c + 4) <= K; c += 4) {
    uint64_t w;
    std::memcpy(&w, mask + 2 * c, 8);
    // mask registers straight from memory (a load, not a port-5 move from a GPR)
    __mmask16* mk = reinterpret_cast<__mmask16*>(const_cast<uint8_t*>(mask + 2 * c));
    const __mmask16 k0 = _load_mask16(mk), k1 = _load_mask16(mk + 1), k2 = _load_mask16(mk + 2),
                    k3 = _load_mask16(mk + 3);
    const int o1 = _mm_popcnt_u32(static_cast<uint32_t>(w & 0xFFFF));
    const int o2 = _mm_popcnt_u32(static_cast<uint32_t>(w));
    const int o3 = static_cast<int>(_mm_popcnt_u64(w & 0xFFFFFFFFFFFFull));
    const float* xc = x + 16 * c;
    // software prefetch ahead of the (data-dependent) value stream: two lines per step
    _mm_prefetch(reinterpret_cast<const char*>(v) + 2048, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(v) + 2048 + 64, _MM_HINT_T0);
    a0 = _mm512_fmadd_ps(expand16<V>(v, k0), _mm512_loadu_ps(xc), a0);
    a1 = _mm512_fmadd_ps(expand16<V>(v + o1, k1), _mm512_loadu_ps(xc + 16), a1);
    a2 = _mm512_fmadd_ps(expand16<V>(v + o2, k2), _mm512_loadu_ps(xc + 32), a2);
    a3 = _mm512_fmadd_ps(expand16<V>(v + o3, k3), _mm512_loadu_ps(xc + 48), a3);
    v += _mm_popcnt_u64(w);
  }
  for (; c < chunks; ++c) {
    const uint32_t m = chunk_mask<1>(mask, c);
    const __mmask16 km = static_cast<__mmask16>(m);
    a0 = _mm512_fmadd_ps(expand16<V>(v, km), _mm512_maskz_loadu_ps(km, x + 16 * c), a0);
    v += _mm_popcnt_u32(m);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

// Two rows far apart at once (two independent value streams in flight: more memory
// parallelism when the weights come from DRAM), batch 1, bit-per-column mask.
template <typename V>
PK_AVX512 void expand_row1_pair(const V* va, const uint8_t* ma, const V* vb, const uint8_t* mb, const float* x,
                                int64_t K, float* out_a, float* out_b) {
  const int64_t chunks = (K + 15) / 16;
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 2 <= chunks && 16 * (c + 2) <= K; c += 2) {
    uint32_t wa, wb;
    std::memcpy(&wa, ma + 2 * c, 4);
    std::memcpy(&wb, mb + 2 * c, 4);
    __mmask16* pa = reinterpret_cast<__mmask16*>(const_cast<uint8_t*>(ma + 2 * c));
    __mmask16* pb = reinterpret_cast<__mmask16*>(const_cast<uint8_t*>(mb + 2 * c));
    const __mmask16 ka0 = _load_mask16(pa), ka1 = _load_mask16(pa + 1);
    const __mmask16 kb0 = _load_mask16(pb), kb1 = _load_mask16(pb + 1);
    const int oa = _mm_popcnt_u32(wa & 0xFFFF), ob = _mm_popcnt_u32(wb & 0xFFFF);
    _mm_prefetch(reinterpret_cast<const char*>(va) + 2048, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(vb) + 2048, _MM_HINT_T0);
    const __m512 x0 = _mm512_loadu_ps(x + 16 * c), x1 = _mm512_loadu_ps(x + 16 * c + 16);
    a0 = _mm512_fmadd_ps(expand16<V>(va, ka0), x0, a0);
    b0 = _mm512_fmadd_ps(expand16<V>(vb, kb0), x0, b0);
    a1 = _mm512_fmadd_ps(expand16<V>(va + oa, ka1), x1, a1);
    b1 = _mm512_fmadd_ps(expand16<V>(vb + ob, kb1), x1, b1);
    va += _mm_popcnt_u32(wa);
    vb += _mm_popcnt_u32(wb);
  }
  for (; c < chunks; ++c) {
    const __mmask16 ka = static_cast<__mmask16>(chunk_mask<1>(ma, c)), kb = static_cast<__mmask16>(chunk_mask<1>(mb, c));
    const __m512 xa = _mm512_maskz_loadu_ps(ka, x + 16 * c), xb = _mm512_maskz_loadu_ps(kb, x + 16 * c);
    a0 = _mm512_fmadd_ps(expand16<V>(va, ka), xa, a0);
    b0 = _mm512_fmadd_ps(expand16<V>(vb, kb), xb, b0);
    va += _mm_popcnt_u32(ka);
    vb += _mm_popcnt_u32(kb);
  }
  *out_a = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
  *out_b = _mm512_reduce_add_ps(_mm512_add_ps(b0, b1));
}

template <typename V>
PK_AVX512 void pair_rows(const Problem& p, int64_t g, int64_t half) {
  const V* base = static_cast<const V*>(p.values);
  float ya, yb;
  expand_row1_pair<V>(base + p.group_ptr[g], p.mask + g * p.mask_stride, base + p.group_ptr[g + half],
                      p.mask + (g + half) * p.mask_stride, p.x, p.K, &ya, &yb);
  store(p, g, 0, ya);
  store(p, g + half, 0, yb);
}

template <typename V, int R, int C>
PK_AVX512 void expand_avx512(const Problem& p, int64_t g) {
  constexpr int BTMAX = (R == 1) ? 8 : 4;
  if (R == 1 && C == 1 && p.B == 1) {
    const V* v = static_cast<const V*>(p.values) + p.group_ptr[g];
    store(p, g, 0, expand_row1<V>(v, p.mask + g * p.mask_stride, p.x, p.K));
    return;
  }
  int64_t b = 0;
  for (; b + BTMAX <= p.B; b += BTMAX) expand_tile<V, R, C, BTMAX>(p, g, b);
  if (p.B - b >= 4 && BTMAX > 4) { expand_tile<V, R, C, 4>(p, g, b); b += 4; }
  if (p.B - b >= 2) { expand_tile<V, R, C, 2>(p, g, b); b += 2; }
  if (p.B - b >= 1) { expand_tile<V, R, C, 1>(p, g, b); b += 1; }
}

// ---------------------------------------------------------------- column-index kernels
// values packed row by row; index[i] = column of values[i] (uint16); row_ptr[n] = row start.
template <typename V> PK_AVX512 inline __m512 cvt16(const V* p, __mmask16 k);
template <> PK_AVX512 inline __m512 cvt16<float>(const float* p, __mmask16 k) { return _mm512_maskz_loadu_ps(k, p); }
template <> PK_AVX512 inline __m512 cvt16<uint16_t>(const uint16_t* p, __mmask16 k) {
  __m256i r = _mm256_maskz_loadu_epi16(k, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(r), 16));
}
template <> PK_AVX512 inline __m512 cvt16<int8_t>(const int8_t* p, __mmask16 k) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, p)));
}

// A gather merges into its destination register; start each from a zeroed one so that
// back-to-back gathers do not wait for each other (a false dependency otherwise).
PK_AVX512 inline __m512 gather16(const float* x, __m512i j) {
  __m512 dst;
  __mmask16 k = 0xFFFF;  // the gather clears its mask as it completes
  asm volatile("vpxord %0, %0, %0\n\tvgatherdps (%2,%3,4), %0%{%1%}"
               : "=&v"(dst), "+Yk"(k)
               : "r"(x), "v"(j)
               : "memory");
  return dst;
}

template <typename V>
PK_AVX512 void gather_row(const Problem& p, int64_t n) {
  const V* vals = static_cast<const V*>(p.values);
  const uint16_t* idx = reinterpret_cast<const uint16_t*>(p.mask);
  const int64_t begin = p.group_ptr[n], end = p.group_ptr[n + 1];
  for (int64_t b = 0; b < p.B; ++b) {
    const float* x = p.x + b * p.K;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t i = begin;
    for (; i + 64 <= end; i += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(vals + i) + 1024, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(idx + i) + 512, _MM_HINT_T0);
      const __m512i j0 = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + i)));
      const __m512i j1 = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + i + 16)));
      const __m512i j2 = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + i + 32)));
      const __m512i j3 = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + i + 48)));
      a0 = _mm512_fmadd_ps(cvt16<V>(vals + i, 0xFFFF), gather16(x, j0), a0);
      a1 = _mm512_fmadd_ps(cvt16<V>(vals + i + 16, 0xFFFF), gather16(x, j1), a1);
      a2 = _mm512_fmadd_ps(cvt16<V>(vals + i + 32, 0xFFFF), gather16(x, j2), a2);
      a3 = _mm512_fmadd_ps(cvt16<V>(vals + i + 48, 0xFFFF), gather16(x, j3), a3);
    }
    a0 = _mm512_add_ps(a0, a2);
    a1 = _mm512_add_ps(a1, a3);
    for (; i + 16 <= end; i += 16) {
      const __m512i j = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + i)));
      a0 = _mm512_fmadd_ps(cvt16<V>(vals + i, 0xFFFF), gather16(x, j), a0);
    }
    float tail = 0.f;  // the last few: scalar loads beat a whole gather
    for (; i < end; ++i) tail += to_float<V>(vals[i]) * x[idx[i]];
    store(p, n, b, _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) + tail);
  }
}

template <typename V>
void gather_row_scalar(const Problem& p, int64_t n) {
  const V* vals = static_cast<const V*>(p.values);
  const uint16_t* idx = reinterpret_cast<const uint16_t*>(p.mask);
  for (int64_t b = 0; b < p.B; ++b) {
    const float* x = p.x + b * p.K;
    float acc = 0.f;
    for (int64_t i = p.group_ptr[n]; i < p.group_ptr[n + 1]; ++i) acc += to_float<V>(vals[i]) * x[idx[i]];
    store(p, n, b, acc);
  }
}

// ---------------------------------------------------------------- batched (many input rows)
// The batch lies along the vector lanes: x^T [K, B] and y^T [N, B]. For every stored weight
// w[n, k], y^T[n, tile] += w * x^T[k, tile]: work and weight bytes per stored weight, not
// per 16 columns, with up to NV * 16 batch rows per register tile. This is what makes a
// prefill or a batch of 128 tokens faster than the dense GEMM at 50% sparsity and more.
struct Batched {
  const float* xt;  // [K, B]
  float* yt;        // [N, B]
  int64_t B;
};

template <int NV>
PK_AVX512 inline void load_tile(const float* xr, __mmask16 tail, __m512 (&xv)[NV]) {
  for (int q = 0; q < NV; ++q) xv[q] = (q == NV - 1) ? _mm512_maskz_loadu_ps(tail, xr + 16 * q) : _mm512_loadu_ps(xr + 16 * q);
}

template <int R, int NV>
PK_AVX512 inline void store_tile(const Problem& p, const Batched& t, int64_t n0, int64_t b0, __mmask16 tail,
                                 __m512 (&acc)[R][NV]) {
  for (int r = 0; r < R; ++r) {
    const int64_t n = n0 + r;
    const __m512 s = _mm512_set1_ps(p.scale ? p.scale[n] : 1.f), bias = _mm512_set1_ps(p.bias ? p.bias[n] : 0.f);
    for (int q = 0; q < NV; ++q)
      _mm512_mask_storeu_ps(t.yt + n * t.B + b0 + 16 * q, q == NV - 1 ? tail : 0xFFFF,
                            _mm512_fmadd_ps(acc[r][q], s, bias));
  }
}

template <typename V, int R, int C, int NV>
PK_AVX512 void batched_group_tile(const Problem& p, const Batched& t, int64_t g, int64_t b0, __mmask16 tail) {
  const V* v = static_cast<const V*>(p.values) + p.group_ptr[g];
  const uint8_t* mask = p.mask + g * p.mask_stride;
  const int64_t chunks = (p.K + 15) / 16;
  __m512 acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < NV; ++q) acc[r][q] = _mm512_setzero_ps();
  for (int64_t c = 0; c < chunks; ++c) {
    uint32_t m = chunk_mask<C>(mask, c);
    const int cnt = _mm_popcnt_u32(m);
    int i = 0;
    while (m) {
      const int j = static_cast<int>(_tzcnt_u32(m));
      m = _blsr_u32(m);
      __m512 xv[NV];
      load_tile<NV>(t.xt + (16 * c + j) * t.B + b0, tail, xv);
      for (int r = 0; r < R; ++r) {
        const __m512 w = _mm512_set1_ps(to_float<V>(v[r * cnt + i]));
        for (int q = 0; q < NV; ++q) acc[r][q] = _mm512_fmadd_ps(w, xv[q], acc[r][q]);
      }
      ++i;
    }
    v += R * cnt;
  }
  store_tile<R, NV>(p, t, g * R, b0, tail, acc);
}

template <typename V, int NV>
PK_AVX512 void batched_index_tile(const Problem& p, const Batched& t, int64_t n, int64_t b0, __mmask16 tail) {
  const V* vals = static_cast<const V*>(p.values);
  const uint16_t* idx = reinterpret_cast<const uint16_t*>(p.mask);
  __m512 acc[1][NV];
  for (int q = 0; q < NV; ++q) acc[0][q] = _mm512_setzero_ps();
  for (int64_t i = p.group_ptr[n]; i < p.group_ptr[n + 1]; ++i) {
    __m512 xv[NV];
    load_tile<NV>(t.xt + static_cast<int64_t>(idx[i]) * t.B + b0, tail, xv);
    const __m512 w = _mm512_set1_ps(to_float<V>(vals[i]));
    for (int q = 0; q < NV; ++q) acc[0][q] = _mm512_fmadd_ps(w, xv[q], acc[0][q]);
  }
  store_tile<1, NV>(p, t, n, b0, tail, acc);
}

// One group (or, for the index format, one row) across the whole batch, tile by tile.
template <typename Tile>
PK_AVX512 inline void over_batch(const Batched& t, int64_t max_nv, Tile&& tile) {
  for (int64_t b0 = 0; b0 < t.B; b0 += 16 * max_nv) {
    const int64_t nb = std::min<int64_t>(16 * max_nv, t.B - b0);
    const int nv = static_cast<int>((nb + 15) / 16);
    const int last = static_cast<int>(nb - 16 * (nv - 1));
    tile(b0, nv, static_cast<__mmask16>(last == 16 ? 0xFFFF : ((1u << last) - 1u)));
  }
}

template <typename V, int R, int C>
PK_AVX512 void batched_group(const Problem& p, const Batched& t, int64_t g) {
  constexpr int MAXNV = (R == 1) ? 8 : 4;
  over_batch(t, MAXNV, [&](int64_t b0, int nv, __mmask16 tail) {
    switch (nv) {
      case 1: batched_group_tile<V, R, C, 1>(p, t, g, b0, tail); break;
      case 2: batched_group_tile<V, R, C, 2>(p, t, g, b0, tail); break;
      case 3: batched_group_tile<V, R, C, 3>(p, t, g, b0, tail); break;
      case 4: batched_group_tile<V, R, C, 4>(p, t, g, b0, tail); break;
      case 5: if constexpr (MAXNV > 4) batched_group_tile<V, R, C, 5>(p, t, g, b0, tail); break;
      case 6: if constexpr (MAXNV > 4) batched_group_tile<V, R, C, 6>(p, t, g, b0, tail); break;
      case 7: if constexpr (MAXNV > 4) batched_group_tile<V, R, C, 7>(p, t, g, b0, tail); break;
      default: if constexpr (MAXNV > 4) batched_group_tile<V, R, C, 8>(p, t, g, b0, tail); break;
    }
  });
}

template <typename V>
PK_AVX512 void batched_index_row(const Problem& p, const Batched& t, int64_t n) {
  over_batch(t, 8, [&](int64_t b0, int nv, __mmask16 tail) {
    switch (nv) {
      case 1: batched_index_tile<V, 1>(p, t, n, b0, tail); break;
      case 2: batched_index_tile<V, 2>(p, t, n, b0, tail); break;
      case 3: batched_index_tile<V, 3>(p, t, n, b0, tail); break;
      case 4: batched_index_tile<V, 4>(p, t, n, b0, tail); break;
      case 5: batched_index_tile<V, 5>(p, t, n, b0, tail); break;
      case 6: batched_index_tile<V, 6>(p, t, n, b0, tail); break;
      case 7: batched_index_tile<V, 7>(p, t, n, b0, tail); break;
      default: batched_index_tile<V, 8>(p, t, n, b0, tail); break;
    }
  });
}

using BatchedFn = void (*)(const Problem&, const Batched&, int64_t);

template <typename V>
BatchedFn pick_batched_rc(int64_t R, int64_t C) {
  if (R == 1 && C == 1) return batched_group<V, 1, 1>;
  if (R == 1 && C == 4) return batched_group<V, 1, 4>;
  if (R == 1 && C == 16) return batched_group<V, 1, 16>;
  if (R == 4 && C == 1) return batched_group<V, 4, 1>;
  if (R == 4 && C == 4) return batched_group<V, 4, 4>;
  return batched_group<V, 4, 16>;
}

// Large batches: the batched kernels pay off when at most a fifth of the weights are stored
// (measured: 2-3.5x the dense GEMM at 90%, 0.5-0.9x at 50%); denser weights
// from dense_from rows on are rebuilt dense for the BLAS GEMM instead.
constexpr double kBatchedMaxDensity = 0.2;
// The column-index format pays from 4 rows (one broadcast + one load per weight beats a
// gather per row); the bitmask walk, branchy per 16 columns, from 16 (expand wins below).
constexpr int64_t kBatchedFromIndex = 4;
constexpr int64_t kBatchedFromBitmask = 16;

inline bool use_batched(bool simd, int64_t dense_from, int64_t B, int64_t stored, int64_t N, int64_t K,
                        int64_t from) {
  return simd && dense_from > 0 && B >= std::min(from, dense_from) &&
         static_cast<double>(stored) <= kBatchedMaxDensity * static_cast<double>(N * K);
}

// x [B, K] -> y [B, N] through x^T / y^T with fn(p, t, unit) over `units` rows or groups.
at::Tensor run_batched(Problem& p, const at::Tensor& x2, int64_t units, BatchedFn fn) {
  at::Tensor xt = x2.t().contiguous();
  at::Tensor yt = at::empty({p.N, p.B}, x2.options());
  Batched t{xt.data_ptr<float>(), yt.data_ptr<float>(), p.B};
  at::parallel_for(0, units, 8, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) fn(p, t, u);
  });
  return yt.t().contiguous();
}

// ---------------------------------------------------------------- unpack (large batches)
// Rebuild rows g*R .. g*R+R-1 of the dense float32 weight (scale applied), K columns each.
template <typename V, int R, int C>
void unpack_scalar(const Problem& p, int64_t g, float* dense) {
  for (int r = 0; r < R; ++r) std::fill(dense + (g * R + r) * p.K, dense + (g * R + r + 1) * p.K, 0.f);
  for_each_stored<V, R, C>(p, g, [&](int64_t k, int r, float w) {
    const int64_t n = g * R + r;
    dense[n * p.K + k] = w * (p.scale ? p.scale[n] : 1.f);
  });
}

template <typename V, int R, int C>
PK_AVX512 void unpack_avx512(const Problem& p, int64_t g, float* dense) {
  const V* v = static_cast<const V*>(p.values) + p.group_ptr[g];
  const uint8_t* mask = p.mask + g * p.mask_stride;
  const int64_t chunks = (p.K + 15) / 16;
  for (int64_t c = 0; c < chunks; ++c) {
    const uint32_t m = chunk_mask<C>(mask, c);
    const __mmask16 km = static_cast<__mmask16>(m);
    const int64_t left = p.K - 16 * c;
    const __mmask16 inside = static_cast<__mmask16>(left >= 16 ? 0xFFFF : ((1u << left) - 1u));
    const int cnt = (C == 16) ? (m ? 16 : 0) : _mm_popcnt_u32(m);
    for (int r = 0; r < R; ++r) {
      const int64_t n = g * R + r;
      __m512 w = m ? ((C == 16) ? load16<V>(v + r * cnt) : expand16<V>(v + r * cnt, km)) : _mm512_setzero_ps();
      if (p.scale) w = _mm512_mul_ps(w, _mm512_set1_ps(p.scale[n]));
      _mm512_mask_storeu_ps(dense + n * p.K + 16 * c, inside, w);
    }
    v += R * cnt;
  }
}

// The dense weight rebuilt for a large batch lives in one reused buffer per calling thread
// (the size of the largest layer seen): a fresh allocation per call would page-fault
// megabytes every time. It is scratch, like a BLAS workspace; it holds no model state.
at::Tensor scratch_weight(int64_t N, int64_t K) {
  thread_local std::vector<float> buffer;
  if (static_cast<int64_t>(buffer.size()) < N * K) {
    buffer.clear();
    buffer.shrink_to_fit();
    buffer.resize(static_cast<size_t>(N * K));
  }
  return at::from_blob(buffer.data(), {N, K}, at::TensorOptions().dtype(at::kFloat));
}

// ---------------------------------------------------------------- AVX2 kernels
// No expand instruction: 8 columns at a time, a lookup table maps the 8-bit mask to a
// permutation of the packed values (lanes whose bit is clear get index -1 and are zeroed).
#define PK_AVX2 __attribute__((target("avx2,fma,bmi,bmi2,popcnt")))

struct Avx2Lut {
  alignas(32) int32_t perm[256][8];
  constexpr Avx2Lut() : perm() {
    for (int m = 0; m < 256; ++m) {
      int k = 0;
      for (int lane = 0; lane < 8; ++lane) perm[m][lane] = ((m >> lane) & 1) ? k++ : -1;
    }
  }
};
constexpr Avx2Lut kAvx2Lut;

template <typename V> PK_AVX2 inline __m256 load8(const V* p);
template <> PK_AVX2 inline __m256 load8<float>(const float* p) { return _mm256_loadu_ps(p); }
template <> PK_AVX2 inline __m256 load8<uint16_t>(const uint16_t* p) {
  const __m128i r = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(r), 16));
}
template <> PK_AVX2 inline __m256 load8<int8_t>(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

template <typename V>
PK_AVX2 inline __m256 expand8(const V* p, uint32_t m8) {
  const __m256i idx = _mm256_load_si256(reinterpret_cast<const __m256i*>(kAvx2Lut.perm[m8]));
  const __m256 r = _mm256_permutevar8x32_ps(load8<V>(p), idx);
  return _mm256_blendv_ps(r, _mm256_setzero_ps(), _mm256_castsi256_ps(idx));
}

PK_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// x lanes 16c .. 16c+15 that lie inside K (the last chunk may be partial)
PK_AVX2 inline void load_x16(const float* x, int64_t left, __m256& lo, __m256& hi) {
  if (left >= 16) {
    lo = _mm256_loadu_ps(x);
    hi = _mm256_loadu_ps(x + 8);
    return;
  }
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  lo = _mm256_maskload_ps(x, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left)), lane));
  hi = _mm256_maskload_ps(x + 8, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left) - 8), lane));
}

template <typename V, int R, int C>
PK_AVX2 void expand_avx2(const Problem& p, int64_t g) {
  const uint8_t* mask = p.mask + g * p.mask_stride;
  const int64_t chunks = (p.K + 15) / 16;
  for (int64_t b = 0; b < p.B; ++b) {
    const float* x = p.x + b * p.K;
    const V* v = static_cast<const V*>(p.values) + p.group_ptr[g];
    __m256 acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t c = 0; c < chunks; ++c) {
      const uint32_t m = chunk_mask<C>(mask, c);
      if (!m) continue;
      const int cnt = _mm_popcnt_u32(m), lo_cnt = _mm_popcnt_u32(m & 0xFF);
      __m256 xlo, xhi;
      load_x16(x + 16 * c, p.K - 16 * c, xlo, xhi);
      for (int r = 0; r < R; ++r) {
        acc[r][0] = _mm256_fmadd_ps(expand8<V>(v + r * cnt, m & 0xFF), xlo, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(expand8<V>(v + r * cnt + lo_cnt, m >> 8), xhi, acc[r][1]);
      }
      v += R * cnt;
    }
    for (int r = 0; r < R; ++r) store(p, g * R + r, b, hsum8(_mm256_add_ps(acc[r][0], acc[r][1])));
  }
}

template <typename V>
PK_AVX2 void gather_row_avx2(const Problem& p, int64_t n) {
  const V* vals = static_cast<const V*>(p.values);
  const uint16_t* idx = reinterpret_cast<const uint16_t*>(p.mask);
  const int64_t begin = p.group_ptr[n], end = p.group_ptr[n + 1];
  for (int64_t b = 0; b < p.B; ++b) {
    const float* x = p.x + b * p.K;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = begin;
    for (; i + 16 <= end; i += 16) {
      const __m256i j0 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(idx + i)));
      const __m256i j1 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(idx + i + 8)));
      a0 = _mm256_fmadd_ps(load8<V>(vals + i), _mm256_i32gather_ps(x, j0, 4), a0);
      a1 = _mm256_fmadd_ps(load8<V>(vals + i + 8), _mm256_i32gather_ps(x, j1, 4), a1);
    }
    float tail = 0.f;
    for (; i < end; ++i) tail += to_float<V>(vals[i]) * x[idx[i]];
    store(p, n, b, hsum8(_mm256_add_ps(a0, a1)) + tail);
  }
}

bool has_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         __builtin_cpu_supports("bmi2");
  return ok;
}

bool has_avx512() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                         __builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("bmi2");
  return ok;
}

// simd argument of the ops: 1 = the best this CPU has, 2 = at most AVX2, 0 = portable loops
int isa_level(int64_t simd) {
  if (simd == 0) return 0;
  if (simd == 1 && has_avx512()) return 2;
  return has_avx2() ? 1 : 0;
}

using GroupFn = void (*)(const Problem&, int64_t);

// level: 2 = AVX-512, 1 = AVX2, 0 = portable
template <typename V, int R, int C>
GroupFn pick(int level) {
  return level == 2 ? expand_avx512<V, R, C> : level == 1 ? expand_avx2<V, R, C> : expand_scalar<V, R, C>;
}

using UnpackFn = void (*)(const Problem&, int64_t, float*);

template <typename V, int R, int C>
UnpackFn pick_unpack(bool simd) {
  return simd ? unpack_avx512<V, R, C> : unpack_scalar<V, R, C>;
}

template <typename V>
UnpackFn pick_unpack_rc(int64_t R, int64_t C, bool simd) {
  if (R == 1 && C == 1) return pick_unpack<V, 1, 1>(simd);
  if (R == 1 && C == 4) return pick_unpack<V, 1, 4>(simd);
  if (R == 1 && C == 16) return pick_unpack<V, 1, 16>(simd);
  if (R == 4 && C == 1) return pick_unpack<V, 4, 1>(simd);
  if (R == 4 && C == 4) return pick_unpack<V, 4, 4>(simd);
  return pick_unpack<V, 4, 16>(simd);
}

template <typename V>
GroupFn pick_rc(int64_t R, int64_t C, int simd) {
  if (R == 1 && C == 1) return pick<V, 1, 1>(simd);
  if (R == 1 && C == 4) return pick<V, 1, 4>(simd);
  if (R == 1 && C == 16) return pick<V, 1, 16>(simd);
  if (R == 4 && C == 1) return pick<V, 4, 1>(simd);
  if (R == 4 && C == 4) return pick<V, 4, 4>(simd);
  if (R == 4 && C == 16) return pick<V, 4, 16>(simd);
  TORCH_CHECK(false, "prunekit sparse_mm: unsupported block rows x cols ", R, "x", C,
              " (rows 1 or 4, cols 1, 4 or 16)");
}

// The value type of the packed weight, as a tag for the templates: f(float{}) etc.
template <typename F>
auto by_value_type(at::ScalarType t, F&& f) {
  switch (t) {
    case at::kFloat: return f(float{});
    case at::kBFloat16: return f(uint16_t{});
    case at::kChar: return f(int8_t{});
    default: TORCH_CHECK(false, "prunekit sparse ops: values must be float32, bfloat16 or int8, got ", t);
  }
}

// Index rows of the column-index format, scattered into the dense weight (scale applied).
template <typename V>
void unpack_index_row(const Problem& p, int64_t n, float* dense) {
  const V* vals = static_cast<const V*>(p.values);
  const uint16_t* idx = reinterpret_cast<const uint16_t*>(p.mask);
  std::fill(dense + n * p.K, dense + (n + 1) * p.K, 0.f);
  const float s = p.scale ? p.scale[n] : 1.f;
  for (int64_t i = p.group_ptr[n]; i < p.group_ptr[n + 1]; ++i) dense[n * p.K + idx[i]] = to_float<V>(vals[i]) * s;
}

// Everything one call needs: float32 x as [B, K], y [B, N], the packed parts, the Problem.
struct Call {
  at::Tensor x2, y, vals, index, ptr, scale, bias;
  Problem p;
  int level;
  c10::ScalarType in_dtype;
  std::vector<int64_t> out_sizes;
};

Call prepare(const at::Tensor& x, const at::Tensor& values, const at::Tensor& index, const at::Tensor& ptr,
             const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& bias, int64_t N,
             int64_t mask_stride, int64_t simd) {
  TORCH_CHECK(x.device().is_cpu(), "prunekit sparse ops: x must be on the CPU");
  TORCH_CHECK(ptr.scalar_type() == at::kLong, "prunekit sparse ops: group_ptr / row_ptr must be int64");
  Call c;
  const int64_t K = x.size(-1);
  c.in_dtype = x.scalar_type();
  c.out_sizes = x.sizes().vec();
  c.out_sizes.back() = N;
  c.x2 = x.reshape({-1, K}).to(at::kFloat).contiguous();
  const int64_t B = c.x2.size(0);
  c.y = at::empty({B, N}, c.x2.options());
  if (scale.has_value() && scale->defined()) c.scale = scale->to(at::kFloat).contiguous();
  if (bias.has_value() && bias->defined()) c.bias = bias->to(at::kFloat).contiguous();
  c.vals = values.contiguous();
  c.index = index.contiguous();
  c.ptr = ptr.contiguous();
  c.p = Problem{c.vals.data_ptr(), static_cast<const uint8_t*>(c.index.data_ptr()), c.ptr.data_ptr<int64_t>(),
                c.scale.defined() ? c.scale.data_ptr<float>() : nullptr,
                c.bias.defined() ? c.bias.data_ptr<float>() : nullptr, c.x2.data_ptr<float>(), c.y.data_ptr<float>(),
                B, K, N, mask_stride};
  c.level = isa_level(simd);
  return c;
}

at::Tensor finish(const Call& c, const at::Tensor& out) { return out.reshape(c.out_sizes).to(c.in_dtype); }

// Compute-bound and not very sparse: rebuild the dense weight once (cheap next to the
// product) into the scratch buffer and let the BLAS GEMM do the work.
at::Tensor rebuild_and_gemm(Call& c, int64_t units, int64_t grain, UnpackFn un) {
  at::Tensor dense = scratch_weight(c.p.N, c.p.K);
  float* d = dense.data_ptr<float>();
  at::parallel_for(0, units, grain, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) un(c.p, u, d);
  });
  return finish(c, c.bias.defined() ? at::addmm(c.bias, c.x2, dense.t()) : at::mm(c.x2, dense.t()));
}

at::Tensor run_rows(Call& c, int64_t units, int64_t grain, GroupFn fn) {
  if (c.p.B > 0) {
    at::parallel_for(0, units, grain, [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) fn(c.p, u);
    });
  }
  return finish(c, c.y);
}

// simd: 1 = the best vector path this CPU has (AVX-512, else AVX2), 2 = at most AVX2, 0 = portable.
at::Tensor sparse_mm(const at::Tensor& x, const at::Tensor& values, const at::Tensor& mask,
                     const at::Tensor& group_ptr, const c10::optional<at::Tensor>& scale,
                     const c10::optional<at::Tensor>& bias, int64_t out_features, int64_t rows_per_group,
                     int64_t cols_per_bit, int64_t simd, int64_t dense_from) {
  TORCH_CHECK(mask.scalar_type() == at::kByte && mask.dim() == 2, "prunekit sparse_mm: mask must be uint8 [groups, bytes]");
  const int64_t N = out_features, R = rows_per_group, C = cols_per_bit;
  TORCH_CHECK(N % R == 0 && mask.size(0) == N / R && group_ptr.numel() == N / R + 1,
              "prunekit sparse_mm: mask / group_ptr do not match out_features");
  Call c = prepare(x, values, mask, group_ptr, scale, bias, N, mask.size(1), simd);
  const int64_t groups = N / R, B = c.p.B;
  const auto type = c.vals.scalar_type();
  if (use_batched(c.level == 2, dense_from, B, c.p.group_ptr[groups], N, c.p.K, kBatchedFromBitmask)) {
    BatchedFn bf = by_value_type(type, [&](auto tag) { return pick_batched_rc<decltype(tag)>(R, C); });
    return finish(c, run_batched(c.p, c.x2, groups, bf));
  }
  if (dense_from > 0 && B >= dense_from) {
    UnpackFn un = by_value_type(type, [&](auto tag) { return pick_unpack_rc<decltype(tag)>(R, C, c.level == 2); });
    return rebuild_and_gemm(c, groups, std::max<int64_t>(1, 64 / R), un);
  }
  GroupFn fn = by_value_type(type, [&](auto tag) { return pick_rc<decltype(tag)>(R, C, c.level); });
  if (B == 1 && R == 1 && C == 1 && c.level == 2 && groups >= 2) {
    const int64_t half = groups / 2;
    auto pair = by_value_type(type, [&](auto tag) { return &pair_rows<decltype(tag)>; });
    at::parallel_for(0, half, 16, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g) pair(c.p, g, half);
    });
    if (groups % 2) fn(c.p, groups - 1);
    return finish(c, c.y);
  }
  return run_rows(c, groups, std::max<int64_t>(1, 16 / R), fn);
}

at::Tensor sparse_mm_index(const at::Tensor& x, const at::Tensor& values, const at::Tensor& index,
                           const at::Tensor& row_ptr, const c10::optional<at::Tensor>& scale,
                           const c10::optional<at::Tensor>& bias, int64_t out_features, int64_t simd,
                           int64_t dense_from) {
  TORCH_CHECK(index.scalar_type() == at::kShort, "prunekit sparse_mm_index: index must be int16 (uint16 bits)");
  TORCH_CHECK(row_ptr.numel() == out_features + 1, "prunekit sparse_mm_index: row_ptr must be [out_features + 1]");
  const int64_t N = out_features;
  Call c = prepare(x, values, index, row_ptr, scale, bias, N, 0, simd);
  const auto type = c.vals.scalar_type();
  if (use_batched(c.level == 2, dense_from, c.p.B, c.p.group_ptr[N], N, c.p.K, kBatchedFromIndex)) {
    BatchedFn bf = by_value_type(type, [&](auto tag) { return &batched_index_row<decltype(tag)>; });
    return finish(c, run_batched(c.p, c.x2, N, bf));
  }
  if (dense_from > 0 && c.p.B >= dense_from) {
    UnpackFn un = by_value_type(type, [&](auto tag) { return &unpack_index_row<decltype(tag)>; });
    return rebuild_and_gemm(c, N, 64, un);
  }
  GroupFn fn = by_value_type(type, [&](auto tag) -> GroupFn {
    using V = decltype(tag);
    return c.level == 2 ? gather_row<V> : c.level == 1 ? gather_row_avx2<V> : gather_row_scalar<V>;
  });
  return run_rows(c, N, 16, fn);
}

// Meta kernels (shapes only, for tracing and torch.compile): y is x with out_features last.
at::Tensor meta_like(const at::Tensor& x, int64_t out_features) {
  auto sizes = x.sizes().vec();
  sizes.back() = out_features;
  return at::empty(sizes, x.options());
}

at::Tensor sparse_mm_meta(const at::Tensor& x, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                          const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&, int64_t out_features,
                          int64_t, int64_t, int64_t, int64_t) {
  return meta_like(x, out_features);
}

at::Tensor sparse_mm_index_meta(const at::Tensor& x, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&,
                                int64_t out_features, int64_t, int64_t) {
  return meta_like(x, out_features);
}

int64_t simd_level() { return isa_level(1); }

// Evict a tensor's bytes from every cache level, so the next read comes from memory, as a
// layer's weights do in a real forward through a model larger than the caches.
void flush_cache(const at::Tensor& t) {
  const char* p = static_cast<const char*>(t.data_ptr());
  const int64_t n = t.numel() * t.element_size();
  for (int64_t i = 0; i < n; i += 64) _mm_clflush(p + i);
  _mm_mfence();
}

}  // namespace

TORCH_LIBRARY(prunekit_sparse, m) {
  m.def(
      "sparse_mm(Tensor x, Tensor values, Tensor mask, Tensor group_ptr, Tensor? scale, Tensor? bias, "
      "int out_features, int rows_per_group, int cols_per_bit, int simd, int dense_from) -> Tensor");
  m.def(
      "sparse_mm_index(Tensor x, Tensor values, Tensor index, Tensor row_ptr, Tensor? scale, Tensor? bias, "
      "int out_features, int simd, int dense_from) -> Tensor");
  m.def("simd_level() -> int", &simd_level);
  m.def("flush_cache(Tensor t) -> ()", &flush_cache);
}

TORCH_LIBRARY_IMPL(prunekit_sparse, CPU, m) {
  m.impl("sparse_mm", &sparse_mm);
  m.impl("sparse_mm_index", &sparse_mm_index);
}
TORCH_LIBRARY_IMPL(prunekit_sparse, Meta, m) {
  m.impl("sparse_mm", &sparse_mm_meta);
  m.impl("sparse_mm_index", &sparse_mm_index_meta);
}
