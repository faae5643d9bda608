;; Permission filter: which identities may read which keys.
;;
;;   put KEY VALUE          (invoke) the first writer of KEY owns it; only the owner overwrites it.
;;   grant KEY READER       (invoke, owner) READER (64 hex digits, an Ed25519 identity key) may read KEY.
;;   revoke KEY READER      (invoke, owner) takes that back.
;;   read KEY               (query or invoke) KEY's value, for its owner, a granted reader or an
;;                          admin; anyone else (and an anonymous query) is refused.
;;
;; Rows: 'o' KEY = owner(32); 'v' KEY = value; 'g' KEY READER(32) = 01.
;; The filter decides what the contract answers; a replica holds the rows themselves, so it guards
;; reads served on a caller's verified identity (a session, a signed query), not the replica's disk.
(module
  (import "iotaf" "arg_count" (func $arg_count (result i32)))
  (import "iotaf" "arg_len" (func $arg_len (param i32) (result i32)))
  (import "iotaf" "arg_read" (func $arg_read (param i32 i32) (result i32)))
  (import "iotaf" "get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "iotaf" "put" (func $put (param i32 i32 i32 i32)))
  (import "iotaf" "delete" (func $delete (param i32 i32)))
  (import "iotaf" "caller" (func $caller (param i32) (result i32)))
  (import "iotaf" "caller_is_admin" (func $caller_is_admin (result i32)))
  (import "iotaf" "ret" (func $ret (param i32 i32)))
  (import "iotaf" "abort" (func $abort (param i32 i32)))

  (memory (export "memory") 1)
  (data (i32.const 0) "put takes KEY VALUE")
  (data (i32.const 32) "grant and revoke take KEY and a 64-hex-digit reader key")
  (data (i32.const 96) "read takes KEY")
  (data (i32.const 112) "only the key owner does this")
  (data (i32.const 144) "not permitted to read this key")
  (data (i32.const 176) "no such key")
  (data (i32.const 192) "an argument is too long")
  (data (i32.const 216) "\01")
  ;; 256: caller (32); 512: KEY (256); 1024: VALUE or READER hex (4096); 5200: READER (32);
  ;; 5300: owner read back (32); 6144: row key; 8192: value read (4096).

  (func $fail (param $msg i32) (param $len i32)
    (call $abort (local.get $msg) (local.get $len))
    (unreachable))

  ;; Reads argument $i (1 to $max bytes) to $ptr; returns its length.
  (func $arg (param $i i32) (param $ptr i32) (param $max i32) (result i32)
    (local $n i32)
    (local.set $n (call $arg_len (local.get $i)))
    (if (i32.or (i32.lt_s (local.get $n) (i32.const 1)) (i32.gt_s (local.get $n) (local.get $max)))
      (then (call $fail (i32.const 192) (i32.const 23))))
    (drop (call $arg_read (local.get $i) (local.get $ptr)))
    (local.get $n))

  ;; Row key $tag KEY at 6144 (KEY of length $kl at 512); returns its length.
  (func $mk (param $tag i32) (param $kl i32) (result i32)
    (i32.store8 (i32.const 6144) (local.get $tag))
    (memory.copy (i32.const 6145) (i32.const 512) (local.get $kl))
    (i32.add (i32.const 1) (local.get $kl)))

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

  ;; Whether the caller (written to 256) owns KEY.
  (func $owner_is_caller (param $kl i32) (result i32)
    (if (i32.ne (call $caller (i32.const 256)) (i32.const 32)) (then (return (i32.const 0))))
    (if (i32.ne (call $get (i32.const 6144) (call $mk (i32.const 0x6f) (local.get $kl)) (i32.const 5300) (i32.const 32)) (i32.const 32))
      (then (return (i32.const 0))))
    (call $equal (i32.const 5300) (i32.const 256) (i32.const 32)))

  (func $nibble (param $c i32) (result i32)
    (if (i32.le_u (i32.sub (local.get $c) (i32.const 48)) (i32.const 9)) (then (return (i32.sub (local.get $c) (i32.const 48)))))
    (if (i32.le_u (i32.sub (local.get $c) (i32.const 97)) (i32.const 5)) (then (return (i32.sub (local.get $c) (i32.const 87)))))
    (if (i32.le_u (i32.sub (local.get $c) (i32.const 65)) (i32.const 5)) (then (return (i32.sub (local.get $c) (i32.const 55)))))
    (call $fail (i32.const 32) (i32.const 55))
    (i32.const 0))

  ;; $n bytes at $dst from 2*$n hex digits at $src.
  (func $unhex (param $src i32) (param $dst i32) (param $n i32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (i32.store8 (i32.add (local.get $dst) (local.get $i))
          (i32.or
            (i32.shl (call $nibble (i32.load8_u (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 1))))) (i32.const 4))
            (call $nibble (i32.load8_u (i32.add (local.get $src) (i32.add (i32.shl (local.get $i) (i32.const 1)) (i32.const 1)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))

  ;; grant/revoke: checks the arguments and ownership, builds 'g' KEY READER at 6144; returns its length.
  (func $grant_key (result i32)
    (local $kl i32) (local $k i32)
    (if (i32.ne (call $arg_count) (i32.const 2)) (then (call $fail (i32.const 32) (i32.const 55))))
    (local.set $kl (call $arg (i32.const 0) (i32.const 512) (i32.const 256)))
    (if (i32.ne (call $arg (i32.const 1) (i32.const 1024) (i32.const 64)) (i32.const 64))
      (then (call $fail (i32.const 32) (i32.const 55))))
    (call $unhex (i32.const 1024) (i32.const 5200) (i32.const 32))
    (if (i32.eqz (call $owner_is_caller (local.get $kl))) (then (call $fail (i32.const 112) (i32.const 28))))
    (local.set $k (call $mk (i32.const 0x67) (local.get $kl)))
    (memory.copy (i32.add (i32.const 6144) (local.get $k)) (i32.const 5200) (i32.const 32))
    (i32.add (local.get $k) (i32.const 32)))

  (func (export "put")
    (local $kl i32) (local $vl i32) (local $k i32)
    (if (i32.ne (call $arg_count) (i32.const 2)) (then (call $fail (i32.const 0) (i32.const 19))))
    (local.set $kl (call $arg (i32.const 0) (i32.const 512) (i32.const 256)))
    (local.set $vl (call $arg (i32.const 1) (i32.const 1024) (i32.const 4096)))
    (drop (call $caller (i32.const 256)))
    (local.set $k (call $mk (i32.const 0x6f) (local.get $kl)))
    (if (i32.lt_s (call $get (i32.const 6144) (local.get $k) (i32.const 5300) (i32.const 32)) (i32.const 0))
      (then (call $put (i32.const 6144) (local.get $k) (i32.const 256) (i32.const 32)))
      (else
        (if (i32.eqz (call $equal (i32.const 5300) (i32.const 256) (i32.const 32)))
          (then (call $fail (i32.const 112) (i32.const 28))))))
    (local.set $k (call $mk (i32.const 0x76) (local.get $kl)))
    (call $put (i32.const 6144) (local.get $k) (i32.const 1024) (local.get $vl)))

  (func (export "grant")
    (local $k i32)
    (local.set $k (call $grant_key))
    (call $put (i32.const 6144) (local.get $k) (i32.const 216) (i32.const 1)))

  (func (export "revoke")
    (call $delete (i32.const 6144) (call $grant_key)))

  (func (export "read")
    (local $kl i32) (local $k i32) (local $ok i32) (local $n i32)
    (if (i32.ne (call $arg_count) (i32.const 1)) (then (call $fail (i32.const 96) (i32.const 14))))
    (local.set $kl (call $arg (i32.const 0) (i32.const 512) (i32.const 256)))
    (local.set $ok (call $caller_is_admin))
    (if (i32.eqz (local.get $ok)) (then (local.set $ok (call $owner_is_caller (local.get $kl)))))
    (if (i32.eqz (local.get $ok))
      (then
        (if (i32.eq (call $caller (i32.const 256)) (i32.const 32))
          (then
            (local.set $k (call $mk (i32.const 0x67) (local.get $kl)))
            (memory.copy (i32.add (i32.const 6144) (local.get $k)) (i32.const 256) (i32.const 32))
            (local.set $ok (i32.ge_s (call $get (i32.const 6144) (i32.add (local.get $k) (i32.const 32)) (i32.const 5300) (i32.const 0))
                                     (i32.const 0)))))))
    (if (i32.eqz (local.get $ok)) (then (call $fail (i32.const 144) (i32.const 30))))
    (local.set $n (call $get (i32.const 6144) (call $mk (i32.const 0x76) (local.get $kl)) (i32.const 8192) (i32.const 4096)))
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (call $fail (i32.const 176) (i32.const 11))))
    (call $ret (i32.const 8192) (local.get $n)))
)
