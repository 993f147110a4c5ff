//! `Client::from_env` (a test binary of its own: it changes the process environment).

use asr_pipeline::botlhale::Client;
use asr_pipeline::ErrorKind;

#[test]
fn from_env_prefers_the_refresh_token_and_never_prints_it() {
    for k in [
        "BOTLHALE_TOKEN",
        "BOTLHALE_REFRESH_TOKEN",
        "BOTLHALE_ORG_ID",
        "BOTLHALE_BASE_URL",
    ] {
        std::env::remove_var(k);
    }
    let e = Client::from_env().unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::InvalidConfig { .. }), "{e}");

    std::env::set_var("BOTLHALE_TOKEN", "id-token-VALUE");
    std::env::set_var("BOTLHALE_ORG_ID", "org-7");
    let c = Client::from_env().unwrap();
    assert_eq!(c.base_url(), "https://api.botlhale.xyz");
    assert_eq!(c.org_id(), Some("org-7"));
    let dbg = format!("{c:?}");
    assert!(
        dbg.contains("IdToken(***)") && !dbg.contains("id-token-VALUE"),
        "{dbg}"
    );

    std::env::set_var("BOTLHALE_REFRESH_TOKEN", "refresh-VALUE");
    std::env::set_var("BOTLHALE_BASE_URL", "http://127.0.0.1:8080/");
    let c = Client::from_env().unwrap();
    assert_eq!(c.base_url(), "http://127.0.0.1:8080");
    let dbg = format!("{c:?}");
    assert!(
        dbg.contains("RefreshToken(***)") && !dbg.contains("refresh-VALUE"),
        "{dbg}"
    );
}
