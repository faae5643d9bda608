;; Counter: the smallest useful contract, and the one `iotaf bench chaincode` runs.
;;
;;   bump KEY    (invoke) reads KEY's u64 (0 if absent), adds 1, writes it back; returns the new value
;;               (8 bytes, little-endian).
;;   value KEY   (query) KEY's u64, 8 bytes little-endian (0 if absent).
(module
  (import "iotaf" "arg_len" (func $arg_len (param i32) (result i32)))
  (import "iotaf" "arg_read" (func $arg_read (param i32 i32) (result i32)))
  (import "iotaf" "get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "iotaf" "put" (func $put (param i32 i32 i32 i32)))
  (import "iotaf" "ret" (func $ret (param i32 i32)))
  (import "iotaf" "abort" (func $abort (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "takes one KEY of 1 to 64 bytes")
  ;; 0: KEY (64); 128: value (8)

  ;; Reads KEY to 0 and its value to 128; returns KEY's length.
  (func $load (result i32)
    (local $kl i32)
    (local.set $kl (call $arg_len (i32.const 0)))
    (if (i32.or (i32.lt_s (local.get $kl) (i32.const 1)) (i32.gt_s (local.get $kl) (i32.const 64)))
      (then (call $abort (i32.const 256) (i32.const 30)) (unreachable)))
    (drop (call $arg_read (i32.const 0) (i32.const 0)))
    (if (i32.ne (call $get (i32.const 0) (local.get $kl) (i32.const 128) (i32.const 8)) (i32.const 8))
      (then (i64.store (i32.const 128) (i64.const 0))))
    (local.get $kl))

  (func (export "bump")
    (local $kl i32)
    (local.set $kl (call $load))
    (i64.store (i32.const 128) (i64.add (i64.load (i32.const 128)) (i64.const 1)))
    (call $put (i32.const 0) (local.get $kl) (i32.const 128) (i32.const 8))
    (call $ret (i32.const 128) (i32.const 8)))

  (func (export "value")
    (drop (call $load))
    (call $ret (i32.const 128) (i32.const 8)))
)
