use super::*;
use crate::store::NewDevice;

fn state(dir: &std::path::Path) -> std::sync::Arc<GatewayState> {
    GatewayState::for_tests(dir)
}

/// Unknown, paired, revoked: the three answers every transport relies on, from one function.
#[test]
fn a_key_is_unpaired_then_paired_then_revoked() {
    let t = tempfile::tempdir().unwrap();
    let st = state(t.path());
    assert_eq!(key_status(&st, "d1"), KeyStatus::Unpaired);
    let dev = NewDevice {
        device_id: "d1".into(),
        public_key: "pk".into(),
        role: "operator".into(),
        scopes: vec!["operator.read".into()],
        ..Default::default()
    };
    st.store().pair_device(&dev, "silent", "loopback").unwrap();
    assert_eq!(key_status(&st, "d1"), KeyStatus::Paired);
    assert!(key_status(&st, "d1").is_trusted());
    st.store().revoke_device("d1", "test").unwrap();
    assert_eq!(key_status(&st, "d1"), KeyStatus::Revoked);
    assert!(!key_status(&st, "d1").is_trusted());
}
