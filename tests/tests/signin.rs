//! Sign-in: every way a token can be wrong is UNAUTHENTICATED and answers nothing; trusted
//! issuers from configuration are accepted.

use citybrain::hub::HubOptions;
use citybrain_auth::{AUDIENCE, Claims, LocalIssuer};
use citybrain_proto::v1 as pb;
use citybrain_proto::v1::identity_service_client::IdentityServiceClient;
use citybrain_tests::{TestHub, authed};
use citybrain_types::Role;
use std::time::{SystemTime, UNIX_EPOCH};
use tonic::{Code, Request};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Claims {
    let now = now();
    Claims {
        iss: "citybrain-hub".into(),
        sub: "tester".into(),
        aud: AUDIENCE.into(),
        exp: now + 600,
        nbf: now,
        iat: now,
        dept: "civil-affairs".into(),
        role: "consumer".into(),
    }
}

#[tokio::test]
async fn every_bad_token_is_unauthenticated() {
    let hub = TestHub::demo().await;
    let issuer = &hub.started.issuer;
    let other_dir = tempfile::tempdir().unwrap();
    let other = LocalIssuer::load_or_create(other_dir.path()).unwrap();

    let sign = |f: &dyn Fn(&mut Claims)| {
        let mut c = claims();
        f(&mut c);
        issuer.sign(&c).unwrap()
    };
    let good = sign(&|_| {});
    let foreign = other.sign(&claims()).unwrap();
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[2] = foreign.split('.').nth(2).unwrap().to_owned();
    let bad_signature = parts.join(".");
    let mut payload_swapped: Vec<String> = good.split('.').map(str::to_owned).collect();
    payload_swapped[1] = sign(&|c| c.role = "admin".into())
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    let tampered = payload_swapped.join(".");

    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing bearer token"),
        (Some("Basic dXNlcjpwdw==".into()), "Bearer"),
        (Some("Bearer not.a.jwt".into()), "malformed"),
        (
            Some(format!("Bearer {}", sign(&|c| c.exp = now() - 3600))),
            "expired",
        ),
        (
            Some(format!("Bearer {}", sign(&|c| c.nbf = now() + 3600))),
            "not yet valid",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(&|c| c.aud = "another-hub".into())
            )),
            "audience",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(&|c| c.iss = "someone-else".into())
            )),
            "issuer",
        ),
        (Some(format!("Bearer {bad_signature}")), "signature"),
        (Some(format!("Bearer {tampered}")), "signature"),
        (Some(format!("Bearer {foreign}")), "unknown key"),
        (
            Some(format!("Bearer {}", sign(&|c| c.role = "root".into()))),
            "role",
        ),
    ];
    let mut api = hub.catalog().await;
    for (header, want) in cases {
        let mut req = Request::new(pb::ListTablesRequest::default());
        if let Some(h) = &header {
            req.metadata_mut()
                .insert("authorization", h.parse().unwrap());
        }
        let err = api.list_tables(req).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::Unauthenticated,
            "{header:?}: {}",
            err.message()
        );
        assert!(
            err.message().contains(want),
            "{header:?}: '{}' should say {want}",
            err.message()
        );
    }

    // The good token works, and the role it carries is the one that was signed.
    let me = IdentityServiceClient::new(hub.channel().await)
        .who_am_i(authed(&good, pb::WhoAmIRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (me.department.as_str(), me.role.as_str()),
        ("civil-affairs", "consumer")
    );
}

#[tokio::test]
async fn the_right_role_is_required() {
    let hub = TestHub::demo().await;
    let mut api = hub.catalog().await;
    for role in [Role::Consumer, Role::Auditor] {
        let token = hub.token("public-security", role);
        let err = api
            .deprecate_table(authed(
                &token,
                pb::DeprecateTableRequest {
                    name: "population.residents".into(),
                    reason: "x".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{role:?}");
    }
}

#[tokio::test]
async fn configured_issuers_are_trusted_by_exact_key_id() {
    let dir = tempfile::tempdir().unwrap();
    citybrain::hub::prepare_demo(dir.path(), 300, None).unwrap();
    // An external identity provider's key pair (made the same way as the hub's own).
    let idp_dir = tempfile::tempdir().unwrap();
    let idp = LocalIssuer::load_or_create(idp_dir.path()).unwrap();
    let trust = idp_dir.path().join("trusted.toml");
    std::fs::write(
        &trust,
        format!(
            "[[issuer]]\niss = \"citybrain-hub\"\nkid = \"{}\"\nalg = \"EdDSA\"\npublic_key_file = \"hub-signing-key.pub.pem\"\n",
            idp.kid()
        ),
    )
    .unwrap();
    let token = idp.mint("health", Role::Consumer, "nurse-1", 300).unwrap();

    let mut opts = HubOptions::new(dir.path());
    opts.trusted_issuers = Some(trust.clone());
    let hub = TestHub::start_with(dir, &opts).await;
    let me = IdentityServiceClient::new(hub.channel().await)
        .who_am_i(authed(&token, pb::WhoAmIRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.department, "health");
    let dir = hub.stop().await;

    // Without the configuration the same token names an unknown key.
    let hub = TestHub::start_in(dir).await;
    let err = IdentityServiceClient::new(hub.channel().await)
        .who_am_i(authed(&token, pb::WhoAmIRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A trust file with a typo is an error at start, not a silent default.
    std::fs::write(
        &trust,
        "[[issuer]]\niss = \"x\"\nkid = \"y\"\nalg = \"EdDSA\"\npublic_key_fil = \"a.pem\"\n",
    )
    .unwrap();
    let mut opts = HubOptions::new(hub.data_dir());
    opts.trusted_issuers = Some(trust);
    assert!(citybrain::hub::start(&opts).await.is_err());
}
