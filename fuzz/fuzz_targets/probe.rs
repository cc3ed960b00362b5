//! Punch probes from anyone on the internet: framing, the claimed sender, and authentication. A
//! probe that opens was sealed by the peer (the fuzzer cannot forge one), and whatever opens
//! re-seals to a probe that opens to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pvpn::core::keys::SecretKey;
use p2pvpn::core::punch::probe::{is_probe, sender_of, ProbeKey, MAGIC, PROBE_LEN};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

/// (the peer's key for us, our key for the peer): two ends of one pairwise key.
fn keys() -> &'static (ProbeKey, ProbeKey) {
    static K: OnceLock<(ProbeKey, ProbeKey)> = OnceLock::new();
    K.get_or_init(|| {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let a = SecretKey::generate(&mut rng);
        let b = SecretKey::generate(&mut rng);
        (
            ProbeKey::new(&a, &b.public_key()),
            ProbeKey::new(&b, &a.public_key()),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (theirs, ours) = keys();
    // Also try the bytes reframed as a probe, so the fuzzer reaches the crypto and the fields.
    let mut framed = data.to_vec();
    framed.resize(PROBE_LEN, 0);
    framed[..4].copy_from_slice(&MAGIC);
    for bytes in [data, &framed[..]] {
        assert_eq!(sender_of(bytes).is_ok(), is_probe(bytes));
        if let Ok(probe) = ours.open(bytes) {
            let mut rng = ChaCha8Rng::seed_from_u64(2);
            assert_eq!(ours.open(&theirs.seal(&probe, &mut rng)), Ok(probe));
        }
    }
});
