//! The decrypting reader fed arbitrary bytes never panics: every input either decrypts or
//! fails with an error. The key below exists only for fuzzing; the seed corpus in
//! `fuzz/seeds/decrypt_reader` holds valid artifacts encrypted to it, so mutations reach the
//! payload, not only the header parser.
//!
//! Run (from fuzz/): cargo +nightly fuzz run decrypt_reader corpus/decrypt_reader seeds/decrypt_reader
#![no_main]

use std::io::Read;
use std::str::FromStr;

use ecobackup_core::crypto::age::x25519::Identity;
use ecobackup_core::crypto::Keyring;
use ecobackup_core::transform::decrypt_reader;
use libfuzzer_sys::fuzz_target;

/// A throwaway identity (public key age147mdgn2r90pmlq7c72hdldfuqd34mkjwen0n28a3ar5vpqqr9pcqxwpru7).
const FUZZ_IDENTITY: &str = "AGE-SECRET-KEY-1CR3D7VXJZ0Y3WMSW4SZ3CQPG8648JG89LD7LUDZUMSH30C3D3U6S03HUS7";

fuzz_target!(|data: &[u8]| {
    let identity = Identity::from_str(FUZZ_IDENTITY).expect("valid fuzz identity");
    let keyring = Keyring::from_identities(vec![identity]);
    if let Ok(mut plaintext) = decrypt_reader(data, &keyring) {
        let mut sink = Vec::new();
        let _ = plaintext.read_to_end(&mut sink);
    }
});
