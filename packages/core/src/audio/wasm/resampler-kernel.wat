;; The resampler's filtering kernel (packages/core/src/audio/resampler.ts): one polyphase FIR dot product per output
;; sample, in 128-bit SIMD (f32x4). Assembled by packages/core/scripts/build-resampler-wasm.mjs into
;; resampler-kernel.ts; edit this file, then run that script (core's build does).
;;
;; Each instance owns its memory: one page that cannot grow, so the resampler's typed-array views of it stay valid.
;; The resampler lays it out (byte offsets passed in): coefficients, phase steps, Int16 output, Float32 input.
(module
  (memory (export "memory") 1 1)

  ;; Computes `count` outputs into out[0..count) (Int16, rounded half to even, clamped).
  ;;   coeffs: L phases of `taps` f32 taps each (a multiple of 16), phase-major, oldest input's tap first
  ;;   steps:  per phase p, two i32: the next output's phase and how many input samples it advances
  ;;   buf:    f32 input samples; output 0 is phase `phase` over buf[newest - taps + 1 .. newest]
  (func (export "filter")
    (param $coeffs i32) (param $taps i32) (param $steps i32) (param $buf i32)
    (param $out i32) (param $count i32) (param $newest i32) (param $phase i32)
    (local $bytes i32) (local $end i32) (local $c i32) (local $cEnd i32) (local $x i32) (local $step i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $y f32)
    (local.set $bytes (i32.shl (local.get $taps) (i32.const 2)))
    (local.set $end (i32.add (local.get $out) (i32.shl (local.get $count) (i32.const 1))))
    (block $done
      (loop $outputs
        (br_if $done (i32.ge_u (local.get $out) (local.get $end)))
        (local.set $c (i32.add (local.get $coeffs) (i32.mul (local.get $phase) (local.get $bytes))))
        (local.set $cEnd (i32.add (local.get $c) (local.get $bytes)))
        (local.set $x
          (i32.sub (i32.add (local.get $buf) (i32.shl (i32.add (local.get $newest) (i32.const 1)) (i32.const 2)))
                   (local.get $bytes)))
        ;; Four independent accumulators (16 taps per iteration) hide the latency of the vector adds.
        (local.set $a0 (v128.const i64x2 0 0))
        (local.set $a1 (v128.const i64x2 0 0))
        (local.set $a2 (v128.const i64x2 0 0))
        (local.set $a3 (v128.const i64x2 0 0))
        (loop $taps
          (local.set $a0 (f32x4.add (local.get $a0)
            (f32x4.mul (v128.load (local.get $c)) (v128.load align=4 (local.get $x)))))
          (local.set $a1 (f32x4.add (local.get $a1)
            (f32x4.mul (v128.load offset=16 (local.get $c)) (v128.load offset=16 align=4 (local.get $x)))))
          (local.set $a2 (f32x4.add (local.get $a2)
            (f32x4.mul (v128.load offset=32 (local.get $c)) (v128.load offset=32 align=4 (local.get $x)))))
          (local.set $a3 (f32x4.add (local.get $a3)
            (f32x4.mul (v128.load offset=48 (local.get $c)) (v128.load offset=48 align=4 (local.get $x)))))
          (local.set $c (i32.add (local.get $c) (i32.const 64)))
          (local.set $x (i32.add (local.get $x) (i32.const 64)))
          (br_if $taps (i32.lt_u (local.get $c) (local.get $cEnd))))
        (local.set $a0 (f32x4.add (f32x4.add (local.get $a0) (local.get $a1)) (f32x4.add (local.get $a2) (local.get $a3))))
        (local.set $y
          (f32.add (f32.add (f32x4.extract_lane 0 (local.get $a0)) (f32x4.extract_lane 1 (local.get $a0)))
                   (f32.add (f32x4.extract_lane 2 (local.get $a0)) (f32x4.extract_lane 3 (local.get $a0)))))
        (i32.store16 (local.get $out)
          (i32.trunc_sat_f32_s
            (f32.min (f32.max (f32.nearest (local.get $y)) (f32.const -32768)) (f32.const 32767))))
        (local.set $out (i32.add (local.get $out) (i32.const 2)))
        (local.set $step (i32.add (local.get $steps) (i32.shl (local.get $phase) (i32.const 3))))
        (local.set $newest (i32.add (local.get $newest) (i32.load offset=4 (local.get $step))))
        (local.set $phase (i32.load (local.get $step)))
        (br $outputs)))))
