;; Meter billing: sums the energy of anchored meter intervals per meter and tariff.
;;
;;   record METER TARIFF WH INTERVAL   (invoke) adds WH (decimal watt-hours) to METER's total under
;;                                     TARIFF, once per (METER, INTERVAL): INTERVAL names the
;;                                     interval's anchor (`anchor put INTERVAL ...`). Only a caller
;;                                     registered with attribute role=collector, or an admin, records.
;;                                     Returns the new total (decimal) and emits event "energy".
;;   total METER TARIFF                (query or invoke) the total in decimal Wh, 0 if none.
;;
;; Rows: 't' u8(len METER) METER TARIFF = u64 little-endian total;
;;       's' u8(len METER) METER INTERVAL = 01 (the interval was recorded).
;; A contract reads only its own rows, so it trusts the collector for WH; the anchor lets anyone
;; check the interval's reads later (Docs/ledger.md, anchor).
(module
  (import "iotaf" "arg_count" (func $arg_count (result i32)))
  (import "iotaf" "arg_len" (func $arg_len (param i32) (result i32)))
  (import "iotaf" "arg_read" (func $arg_read (param i32 i32) (result i32)))
  (import "iotaf" "get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "iotaf" "put" (func $put (param i32 i32 i32 i32)))
  (import "iotaf" "caller_attr" (func $caller_attr (param i32 i32 i32 i32) (result i32)))
  (import "iotaf" "caller_is_admin" (func $caller_is_admin (result i32)))
  (import "iotaf" "emit" (func $emit (param i32 i32 i32 i32)))
  (import "iotaf" "ret" (func $ret (param i32 i32)))
  (import "iotaf" "abort" (func $abort (param i32 i32)))

  (memory (export "memory") 1)
  (data (i32.const 0) "role")
  (data (i32.const 8) "collector")
  (data (i32.const 32) "only a collector (role=collector) or an admin records energy")
  (data (i32.const 96) "record takes METER TARIFF WH INTERVAL")
  (data (i32.const 136) "total takes METER TARIFF")
  (data (i32.const 160) "an argument is too long")
  (data (i32.const 184) "energy is a decimal number of Wh")
  (data (i32.const 216) "this interval is already recorded for this meter")
  (data (i32.const 264) "the total overflows")
  (data (i32.const 288) "energy")
  ;; 320: attribute buffer (64); 512: METER (128); 640: TARIFF (64); 704: WH (20);
  ;; 736: INTERVAL (128); 1024: key; 1600: value (8); 1700..1720: decimal output.

  (func $fail (param $msg i32) (param $len i32)
    (call $abort (local.get $msg) (local.get $len))
    (unreachable))

  ;; Reads argument $i (non-empty, at most $max bytes) to $ptr; returns its length.
  (func $arg (param $i i32) (param $ptr i32) (param $max i32) (result i32)
    (local $n i32)
    (local.set $n (call $arg_len (local.get $i)))
    (if (i32.or (i32.lt_s (local.get $n) (i32.const 1)) (i32.gt_s (local.get $n) (local.get $max)))
      (then (call $fail (i32.const 160) (i32.const 23))))
    (drop (call $arg_read (local.get $i) (local.get $ptr)))
    (local.get $n))

  ;; Builds key $tag u8($al) a b at 1024; returns its length.
  (func $key (param $tag i32) (param $a i32) (param $al i32) (param $b i32) (param $bl i32) (result i32)
    (i32.store8 (i32.const 1024) (local.get $tag))
    (i32.store8 (i32.const 1025) (local.get $al))
    (memory.copy (i32.const 1026) (local.get $a) (local.get $al))
    (memory.copy (i32.add (i32.const 1026) (local.get $al)) (local.get $b) (local.get $bl))
    (i32.add (i32.const 2) (i32.add (local.get $al) (local.get $bl))))

  ;; Whether $n bytes at $a equal those at $b.
  (func $equal (param $a i32) (param $b i32) (param $n i32) (result i32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $b) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  ;; Decimal digits at $ptr (1 to 19 of them) as a number.
  (func $parse (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $c i32) (local $v i64)
    (if (i32.gt_u (local.get $len) (i32.const 19)) (then (call $fail (i32.const 184) (i32.const 32))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $c (i32.sub (i32.load8_u (i32.add (local.get $ptr) (local.get $i))) (i32.const 48)))
        (if (i32.gt_u (local.get $c) (i32.const 9)) (then (call $fail (i32.const 184) (i32.const 32))))
        (local.set $v (i64.add (i64.mul (local.get $v) (i64.const 10)) (i64.extend_i32_u (local.get $c))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $v))

  ;; Returns $v in decimal as the call's result.
  (func $return_decimal (param $v i64)
    (local $p i32)
    (local.set $p (i32.const 1720))
    (loop $next
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $next (i64.ne (local.get $v) (i64.const 0))))
    (call $ret (local.get $p) (i32.sub (i32.const 1720) (local.get $p))))

  ;; The total stored under the key of length $klen at 1024 (0 if none).
  (func $total_of (param $klen i32) (result i64)
    (if (result i64) (i32.eq (call $get (i32.const 1024) (local.get $klen) (i32.const 1600) (i32.const 8)) (i32.const 8))
      (then (i64.load (i32.const 1600)))
      (else (i64.const 0))))

  (func (export "record")
    (local $ml i32) (local $tl i32) (local $el i32) (local $il i32) (local $k i32) (local $wh i64) (local $total i64)
    (if (i32.eqz (call $caller_is_admin))
      (then
        (if (i32.ne (call $caller_attr (i32.const 0) (i32.const 4) (i32.const 320) (i32.const 64)) (i32.const 9))
          (then (call $fail (i32.const 32) (i32.const 60))))
        (if (i32.eqz (call $equal (i32.const 320) (i32.const 8) (i32.const 9)))
          (then (call $fail (i32.const 32) (i32.const 60))))))
    (if (i32.ne (call $arg_count) (i32.const 4)) (then (call $fail (i32.const 96) (i32.const 37))))
    (local.set $ml (call $arg (i32.const 0) (i32.const 512) (i32.const 128)))
    (local.set $tl (call $arg (i32.const 1) (i32.const 640) (i32.const 64)))
    (local.set $el (call $arg (i32.const 2) (i32.const 704) (i32.const 20)))
    (local.set $il (call $arg (i32.const 3) (i32.const 736) (i32.const 128)))
    (local.set $wh (call $parse (i32.const 704) (local.get $el)))
    ;; once per (meter, interval)
    (local.set $k (call $key (i32.const 0x73) (i32.const 512) (local.get $ml) (i32.const 736) (local.get $il)))
    (if (i32.ge_s (call $get (i32.const 1024) (local.get $k) (i32.const 1600) (i32.const 0)) (i32.const 0))
      (then (call $fail (i32.const 216) (i32.const 48))))
    (i32.store8 (i32.const 1600) (i32.const 1))
    (call $put (i32.const 1024) (local.get $k) (i32.const 1600) (i32.const 1))
    ;; add to the (meter, tariff) total
    (local.set $k (call $key (i32.const 0x74) (i32.const 512) (local.get $ml) (i32.const 640) (local.get $tl)))
    (local.set $total (i64.add (call $total_of (local.get $k)) (local.get $wh)))
    (if (i64.lt_u (local.get $total) (local.get $wh)) (then (call $fail (i32.const 264) (i32.const 19))))
    (i64.store (i32.const 1600) (local.get $total))
    (call $put (i32.const 1024) (local.get $k) (i32.const 1600) (i32.const 8))
    (call $emit (i32.const 288) (i32.const 6) (i32.const 1024) (local.get $k))
    (call $return_decimal (local.get $total)))

  (func (export "total")
    (local $ml i32) (local $tl i32)
    (if (i32.ne (call $arg_count) (i32.const 2)) (then (call $fail (i32.const 136) (i32.const 24))))
    (local.set $ml (call $arg (i32.const 0) (i32.const 512) (i32.const 128)))
    (local.set $tl (call $arg (i32.const 1) (i32.const 640) (i32.const 64)))
    (call $return_decimal
      (call $total_of (call $key (i32.const 0x74) (i32.const 512) (local.get $ml) (i32.const 640) (local.get $tl)))))
)
