#![allow(clippy::unwrap_used)]

use super::*;
use bulwark_policy::Signed;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

fn limits() -> Limits {
    Limits::default()
}

fn check_spec(text: &str, expect: Result<&str, &str>) {
    match (ParamSpec::parse(text, &limits()), expect) {
        (Ok(spec), Ok(back)) => assert_eq!(spec.to_text(), back, "{text}"),
        (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{text}: {e}"),
        (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn parameter_schemas_parse_and_print_back() {
    check_spec("count:int", Ok("count:int"));
    check_spec("dry_run:bool", Ok("dry_run:bool"));
    check_spec("label:string", Ok("label:string"));
    check_spec("mode:choice=fast|safe", Ok("mode:choice=fast|safe"));
    check_spec("PATH:string", Err("parameter name"));
    check_spec("ifs:string", Ok("ifs:string"));
    check_spec("1x:int", Err("parameter name"));
    check_spec("import:int", Err("Python keyword"));
    check_spec("x:float", Err("not string, int, bool"));
    check_spec("x", Err("name:type"));
    check_spec("m:choice=a|a", Err("twice"));
    check_spec("m:choice=a|b c", Err("choice"));
    check_spec("m:choice=", Err("choice"));
    assert!(parse_params(&["a:int", "a:bool"], &limits()).is_err());
    let many: Vec<String> = (0..17).map(|i| format!("p{i}:int")).collect();
    assert!(parse_params(&many, &limits()).is_err());
}

#[test]
fn values_are_checked_against_their_type() {
    let spec = |t: &str| ParamSpec::parse(t, &limits()).unwrap();
    assert!(spec("n:int").check_value("42", &limits()).is_ok());
    assert!(spec("n:int").check_value("-7", &limits()).is_ok());
    for bad in ["+1", "01", "1e3", "", " 1", "99999999999999999999"] {
        assert!(spec("n:int").check_value(bad, &limits()).is_err(), "{bad}");
    }
    assert!(spec("b:bool").check_value("true", &limits()).is_ok());
    assert!(spec("b:bool").check_value("yes", &limits()).is_err());
    assert!(spec("m:choice=a|b").check_value("b", &limits()).is_ok());
    assert!(spec("m:choice=a|b").check_value("c", &limits()).is_err());
    assert!(spec("s:string").check_value("a\nb", &limits()).is_err());
    assert!(
        spec("s:string")
            .check_value(&"x".repeat(1025), &limits())
            .is_err()
    );
}

#[test]
fn a_version_without_parameters_is_signed_as_it_is() {
    let content = "echo hi\n";
    let out = script_with_params(Interpreter::Sh, &[], &[], content, &limits()).unwrap();
    assert_eq!(out, content);
    assert!(
        script_with_params(
            Interpreter::Sh,
            &[],
            &[("x".into(), "1".into())],
            content,
            &limits()
        )
        .is_err()
    );
}

#[test]
fn every_parameter_needs_one_valid_value() {
    let specs = parse_params(&["n:int", "m:choice=a|b"], &limits()).unwrap();
    let run = |values: &[(&str, &str)]| {
        let values: Vec<(String, String)> = values
            .iter()
            .map(|(a, b)| ((*a).into(), (*b).into()))
            .collect();
        script_with_params(Interpreter::Bash, &specs, &values, "echo\n", &limits())
    };
    assert!(run(&[("n", "1")]).is_err(), "missing m");
    assert!(run(&[("n", "1"), ("m", "c")]).is_err(), "bad choice");
    assert!(run(&[("n", "1"), ("m", "a"), ("n", "2")]).is_err(), "twice");
    assert!(
        run(&[("n", "1"), ("m", "a"), ("z", "2")]).is_err(),
        "unknown"
    );
    assert_eq!(
        run(&[("m", "a"), ("n", "-3")]).unwrap(),
        "# Parameters (bulwark script library)\nn='-3'\nm='a'\n# End of parameters\necho\n"
    );
}

fn run_with(program: &str, script: &str) -> Option<String> {
    let out = std::process::Command::new(program)
        .arg("-c")
        .arg(script)
        .output()
        .ok()?;
    assert!(out.status.success(), "{program}: {script}");
    Some(String::from_utf8(out.stdout).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// A string value reaches the script exactly as signed, whatever quotes,
    /// `$`, backticks or non-ASCII it holds: the real sh, bash and python3
    /// read it back.
    #[test]
    fn a_string_value_is_never_code(value in "[^\\p{Cc}]{0,40}") {
        let specs = parse_params(&["v:string"], &limits()).unwrap();
        let values = vec![("v".to_owned(), value.clone())];
        for (interpreter, program, show) in [
            (Interpreter::Sh, "sh", "printf '%s' \"$v\"\n"),
            (Interpreter::Bash, "bash", "printf '%s' \"$v\"\n"),
            (Interpreter::Python3, "python3", "import sys; sys.stdout.write(v)\n"),
        ] {
            let script = script_with_params(interpreter, &specs, &values, show, &limits()).unwrap();
            if let Some(out) = run_with(program, &script) {
                prop_assert_eq!(&out, &value, "{}", program);
            }
        }
    }
}

fn facts<'a>(content: &'a str, params: &'a [ParamSpec]) -> VersionFacts<'a> {
    VersionFacts {
        name: "cleanup",
        version: 2,
        content,
        interpreter: Interpreter::Sh,
        params,
    }
}

#[test]
fn a_review_verifies_only_for_the_exact_version() {
    let params = parse_params(&["n:int"], &limits()).unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = PublicKey::Ed25519(key.verifying_key().to_bytes());
    let good = facts("echo 1\n", &params);
    let mut signed = Signed::new(&good.statement(SignerRole::Reviewer));
    signed.sign(&key);
    assert_eq!(
        open_statement(&signed, &good, SignerRole::Reviewer),
        Ok(public.id())
    );
    let keys = vec![("alice", public)];
    assert_eq!(signer_among(&signed, &keys), Some(&"alice"));
    // The same signature for swapped content, another role, other parameters.
    assert_eq!(
        open_statement(&signed, &facts("rm -rf /\n", &params), SignerRole::Reviewer),
        Err(ScriptError::Mismatch("content sha256"))
    );
    assert_eq!(
        open_statement(&signed, &good, SignerRole::Author),
        Err(ScriptError::Mismatch("role"))
    );
    assert_eq!(
        open_statement(&signed, &facts("echo 1\n", &[]), SignerRole::Reviewer),
        Err(ScriptError::Mismatch("parameters"))
    );
    // A flipped signature byte names the key but does not verify.
    let mut forged = signed.clone();
    forged.signatures[0].signature[0] ^= 1;
    assert_eq!(signer_among(&forged, &keys), None);
    // A job envelope never opens as a review.
    let mut job = signed.clone();
    job.payload_type = "application/vnd.bulwark.job.v2+cbor".into();
    assert!(matches!(
        open_statement(&job, &good, SignerRole::Reviewer),
        Err(ScriptError::Malformed(_))
    ));
    // Two signatures: refused.
    let mut two = signed.clone();
    two.sign(&SigningKey::from_bytes(&[8; 32]));
    assert!(open_statement(&two, &good, SignerRole::Reviewer).is_err());
}

#[test]
fn names_and_content_are_bounded() {
    assert!(check_name("disk-cleanup.v2", &limits()).is_ok());
    for bad in ["", "-x", "Upper", "a/b", "a b", &"x".repeat(65)] {
        assert!(check_name(bad, &limits()).is_err(), "{bad}");
    }
    assert!(check_content("", &limits()).is_err());
    assert!(check_content("a\0b", &limits()).is_err());
    assert!(check_content(&"x".repeat(256 * 1024 + 1), &limits()).is_err());
    assert!(check_description("line\nline", &limits()).is_ok());
    assert!(check_description("bell\u{7}", &limits()).is_err());
}
