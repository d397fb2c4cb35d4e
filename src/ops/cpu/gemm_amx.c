// The AMX-BF16 micro-kernel: a 32 x 32 float32 block in four accumulator tiles (tmm0-3), two A tiles
// (tmm4-5: 16 rows x 32 K) and two B tiles (tmm6-7: 16 K pairs x 16 columns) per 32-wide K step.
// Compiled with -mamx-tile -mamx-bf16; only called when cpu_path_active() == CPU_PATH_AMX.
#include <immintrin.h>

#include "ops/bf16.h"

typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

// Eight tiles of 16 rows x 64 bytes. A static object, not a stack one: GCC 12's _tile_loadconfig names only
// the first 8 bytes of its operand, so stores to a local configuration can be optimised away.
static const tile_config all_tiles_16x64 = {
    .palette_id = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

// Loading the configuration costs about as much as a small product (attention runs a few per head), and it
// stays in force in the thread until released: each thread loads it once.
static _Thread_local int configured;


void amx_configure(void) {
    if (configured) return;
    _tile_loadconfig(&all_tiles_16x64);
    configured = 1;
}

void amx_release(void) {
    _tile_release();
    configured = 0;
}

// One float32 multiply-add on the vector unit per K step, its result unused (kept by an empty asm): measured on the
// AMX guest this was tuned on (Intel Xeon, CPUID model 167), the kernel with both operands streaming from L2 ran
// 1.36-1.64 TFLOP/s a core without it and 1.53-1.98 with it (build/amx_rate, "kernel A L2, B L2"), the
// DiT-XL/2 x 2 forward 0.338-0.348 -> 0.315-0.321 s and the DiT-S/2 training step 0.369-0.381 -> 0.349-0.372 s,
// with operands in L1 no change. Any floating-point multiply-add of 128, 256 or 512 bits gave it; integer vector
// adds, scalar work and nops did not: the vector unit's floating-point side kept busy seems to keep the tile
// loads fed (why is not documented that we found). docs/precision.md, fifteenth sitting.
static inline void keep_vector_unit_busy(void) {
    __m128 z = _mm_set1_ps(1.0f);
    __asm__ volatile("" : "+x"(z));   // z unknown to the compiler: the multiply-add cannot be folded or hoisted
    z = _mm_fmadd_ps(z, z, z);
    __asm__ volatile("" : : "x"(z));
}

// No software prefetch of A: the kernel used to ask for the A tiles two K steps ahead (32 lines a step); a
// profile of the DiT-XL/2 x 2 forward put 14% of the kernel's samples on those prefetches, and without them the
// forward ran 3-4% faster (12 of 12 interleaved forwards, three times; DiT-B/2 x 4 2.6%, DiT-S/4 1.7%, DiT-S/2
// forward and training step within noise). Measured on the AMX guest, seventeenth sitting (docs/precision.md).
//
// One body for both block heights, rows (16 or 32) a constant once inlined: the accumulator tiles are tmm0 (rows
// 0-15, columns 0-15), tmm1 (0-15, 16-31), tmm2 (16-31, 0-15) and tmm3 (16-31, 16-31), of which a 16-row block
// uses the first two; the A tiles tmm4 (rows 0-15) and tmm5 (16-31), the B tiles tmm6 (columns 0-15) and tmm7
// (16-31). A tile product's rows do not depend on each other, so a 16-row block's rows are those of the 32-row
// one bit for bit. loads (a constant too): which operands' tiles are loaded with tileloaddt1, the hint that their
// lines will not be used again soon (gemm_bf16.c's amx_kernel_block says when); the same values, the same bits.
static inline __attribute__((always_inline)) void amx_kernel_body(const float *src, int64_t lds, float *dst,
                                                                  int64_t ldd, const uint16_t *A, const a_layout *at,
                                                                  const uint16_t *panel, int ksteps, const float *init,
                                                                  int accumulate, row_job *job, const int rows,
                                                                  const amx_loads loads) {
    const int stream_a = loads == AMX_LOADS_STREAM_BOTH, stream_b = loads != AMX_LOADS_CACHED;
    const int64_t stride = at->row * 2, kstep = at->kstep;   // bytes between a tile's rows; elements between K steps
    const uint16_t *A1 = A + at->half;
    if (accumulate) {
        _tile_loadd(0, src, lds * 4);
        _tile_loadd(1, src + 16, lds * 4);
        if (rows == 32) {
            const float *src1 = src + 16 * lds;
            _tile_loadd(2, src1, lds * 4);
            _tile_loadd(3, src1 + 16, lds * 4);
        }
    } else if (init) {   // every row starts from the same 32 values: a stride-0 load repeats one row
        _tile_loadd(0, init, 0);
        _tile_loadd(1, init + 16, 0);
        if (rows == 32) {
            _tile_loadd(2, init, 0);
            _tile_loadd(3, init + 16, 0);
        }
    } else {
        _tile_zero(0);
        _tile_zero(1);
        if (rows == 32) {
            _tile_zero(2);
            _tile_zero(3);
        }
    }
    for (int kb = 0; kb < ksteps; kb++) {
        const uint16_t *b = panel + (int64_t)kb * 1024;   // the (32 K x 32 N) block: two 512-element halves
        const int64_t k_at = at->koff ? at->koff[kb] : kb * kstep;   // the K step's offset in every row
        if (stream_a) _tile_stream_loadd(4, A + k_at, stride);
        else _tile_loadd(4, A + k_at, stride);
        if (stream_b) {
            _tile_stream_loadd(6, b, 64);
            _tile_stream_loadd(7, b + 512, 64);
        } else {
            _tile_loadd(6, b, 64);
            _tile_loadd(7, b + 512, 64);
        }
        if (rows == 32) {
            if (stream_a) _tile_stream_loadd(5, A1 + k_at, stride);
            else _tile_loadd(5, A1 + k_at, stride);
        }
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        if (rows == 32) {
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
        keep_vector_unit_busy();
        // a row of the job while the products run (one K step: 64 cycles of the tile unit or more)
        if (job && job->next < job->rows) job->run(job, job->next++);
    }
    if (job)
        while (job->next < job->rows) job->run(job, job->next++);
    _tile_stored(0, dst, ldd * 4);
    _tile_stored(1, dst + 16, ldd * 4);
    if (rows == 32) {
        float *dst1 = dst + 16 * ldd;
        _tile_stored(2, dst1, ldd * 4);
        _tile_stored(3, dst1 + 16, ldd * 4);
    }
}

// The body with its loads a constant too: one copy of the loop for each height and kind of loads.
static inline __attribute__((always_inline)) void amx_kernel_loads(const float *src, int64_t lds, float *dst,
                                                                   int64_t ldd, const uint16_t *A, const a_layout *at,
                                                                   const uint16_t *panel, int ksteps, const float *init,
                                                                   int accumulate, row_job *job, const int rows,
                                                                   amx_loads loads) {
    if (loads == AMX_LOADS_STREAM_BOTH)
        amx_kernel_body(src, lds, dst, ldd, A, at, panel, ksteps, init, accumulate, job, rows, AMX_LOADS_STREAM_BOTH);
    else if (loads == AMX_LOADS_STREAM_B)
        amx_kernel_body(src, lds, dst, ldd, A, at, panel, ksteps, init, accumulate, job, rows, AMX_LOADS_STREAM_B);
    else
        amx_kernel_body(src, lds, dst, ldd, A, at, panel, ksteps, init, accumulate, job, rows, AMX_LOADS_CACHED);
}

void amx_kernel_32x32(const float *src, int64_t lds, float *dst, int64_t ldd, const uint16_t *A, const a_layout *at,
                      const uint16_t *panel, int ksteps, const float *init, int accumulate, row_job *job,
                      amx_loads loads) {
    amx_kernel_loads(src, lds, dst, ldd, A, at, panel, ksteps, init, accumulate, job, 32, loads);
}

// The first 16 rows only (dst's rows 16..31 untouched): two accumulator tiles, one A tile and the two B tiles a K
// step, half the tile products and A loads (gemm_bf16.c's amx_kernel_block takes it for blocks of at most 16
// wanted rows).
void amx_kernel_16x32(const float *src, int64_t lds, float *dst, int64_t ldd, const uint16_t *A, const a_layout *at,
                      const uint16_t *panel, int ksteps, const float *init, int accumulate, row_job *job,
                      amx_loads loads) {
    amx_kernel_loads(src, lds, dst, ldd, A, at, panel, ksteps, init, accumulate, job, 16, loads);
}
