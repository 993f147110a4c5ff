//! `Client::from_env`. The environment is the process's own, shared by every test of this
//! binary: each case runs in a child process of this test binary, with its variables set on
//! the child only.

use std::process::Command;

use asr_pipeline::botlhale::Client;
use asr_pipeline::ErrorKind;

const TEST_NAME: &str = "client_env::from_env_prefers_the_refresh_token_and_never_prints_it";
const VARS: [&str; 4] = [
    "BOTLHALE_TOKEN",
    "BOTLHALE_REFRESH_TOKEN",
    "BOTLHALE_ORG_ID",
    "BOTLHALE_BASE_URL",
];

#[test]
fn from_env_prefers_the_refresh_token_and_never_prints_it() {
    if let Ok(case) = std::env::var("CLIENT_ENV_CASE") {
        check(&case);
        return;
    }
    let cases: [(&str, &[(&str, &str)]); 3] = [
        ("none", &[]),
        (
            "id_token",
            &[
                ("BOTLHALE_TOKEN", "id-token-VALUE"),
                ("BOTLHALE_ORG_ID", "org-7"),
            ],
        ),
        (
            "refresh",
            &[
                ("BOTLHALE_TOKEN", "id-token-VALUE"),
                ("BOTLHALE_ORG_ID", "org-7"),
                ("BOTLHALE_REFRESH_TOKEN", "refresh-VALUE"),
                ("BOTLHALE_BASE_URL", "http://127.0.0.1:8080/"),
            ],
        ),
    ];
    for (case, vars) in cases {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args([TEST_NAME, "--exact", "--test-threads=1"])
            .env("CLIENT_ENV_CASE", case);
        for k in VARS {
            c.env_remove(k);
        }
        c.envs(vars.iter().copied());
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "case {case}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("1 passed"), "case {case} did not run: {text}");
    }
}

fn check(case: &str) {
    match case {
        "none" => {
            let e = Client::from_env().unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::InvalidConfig { .. }), "{e}");
        }
        "id_token" => {
            let c = Client::from_env().unwrap();
            assert_eq!(c.base_url(), "https://api.botlhale.xyz");
            assert_eq!(c.org_id(), Some("org-7"));
            let dbg = format!("{c:?}");
            assert!(
                dbg.contains("IdToken(***)") && !dbg.contains("id-token-VALUE"),
                "{dbg}"
            );
        }
        "refresh" => {
            let c = Client::from_env().unwrap();
            assert_eq!(c.base_url(), "http://127.0.0.1:8080");
            let dbg = format!("{c:?}");
            assert!(
                dbg.contains("RefreshToken(***)") && !dbg.contains("refresh-VALUE"),
                "{dbg}"
            );
        }
        other => panic!("unknown case {other}"),
    }
}
