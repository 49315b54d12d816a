//! The credentials file (`.credentials.json`): any bytes parse to a login or a typed error,
//! and a parsed login serialises and parses back to the same tokens.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz/.credentials.json");
    if let Ok(login) = claude_auth::OAuthLogin::parse(data, path) {
        let again = claude_auth::OAuthLogin::parse(&login.to_bytes(), path)
            .expect("a parsed login must parse again after writing");
        assert_eq!(again.access_token, login.access_token);
        assert_eq!(again.refresh_token, login.refresh_token);
    }
});
