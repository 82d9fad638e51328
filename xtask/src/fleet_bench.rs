//! `cargo xtask fleet-bench`: the fleet figures of issue 18 on this machine.
//!
//! Builds the release binaries, then runs `crates/sim/bench-fleet.sh` (the
//! one implementation of the measurement) with the settings:
//! heartbeat 60 s, `bulwark up --no-agent` on a fresh data directory, ports
//! chosen at run time, N virtual devices from `bulwark-sim`, a job fan-out,
//! a reconnect storm, and the real agent's memory after 10 s and after 5
//! reconnects. Not part of `cargo xtask test`: it takes minutes and its
//! time figures depend on the machine's load.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

pub const USAGE: &str = "\
  fleet-bench [--agents N] [--hold-secs S] [--ramp R] [--no-build]
              [--skip-agent] [--skip-storm] [--skip-fanout] [--keep]
                        build release, start a server, connect N simulated
                        agents (default 2000) and print the fleet figures
                        (server memory per agent, idle CPU, job fan-out,
                        reconnect storm, agent size and memory); see README
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub agents: u32,
    pub hold_secs: u32,
    pub ramp: u32,
    pub build: bool,
    /// Environment flags for the script (`SKIP_AGENT=1`, ...).
    pub flags: Vec<(&'static str, &'static str)>,
}

pub fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        agents: 2000,
        hold_secs: 60,
        ramp: 500,
        build: true,
        flags: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u32> {
            let value = args
                .next()
                .with_context(|| format!("{name} needs a number"))?;
            value
                .parse()
                .with_context(|| format!("{name} {value}: not a number"))
        };
        match arg.as_str() {
            "--agents" => options.agents = number("--agents")?,
            "--hold-secs" => options.hold_secs = number("--hold-secs")?,
            "--ramp" => options.ramp = number("--ramp")?,
            "--no-build" => options.build = false,
            "--skip-agent" => options.flags.push(("SKIP_AGENT", "1")),
            "--skip-storm" => options.flags.push(("SKIP_STORM", "1")),
            "--skip-fanout" => options.flags.push(("SKIP_FANOUT", "1")),
            "--keep" => options.flags.push(("KEEP", "1")),
            other => bail!("fleet-bench: unknown argument {other:?}\nusage:\n{USAGE}"),
        }
    }
    if options.agents == 0 || options.ramp == 0 {
        bail!("fleet-bench: --agents and --ramp must be at least 1");
    }
    Ok(options)
}

pub fn run(root: &Path, options: &Options) -> Result<()> {
    if options.build {
        println!("Building the release binaries (bulwark, bulwark-agent, bulwark-sim).");
        super::run(Command::new(super::cargo_bin()).current_dir(root).args([
            "build",
            "--release",
            "-p",
            "bulwark",
            "-p",
            "bulwark-agent",
            "-p",
            "bulwark-sim",
            "--bins",
        ]))?;
        println!("Building the agent as endpoints get it (the `agent` profile).");
        super::run(Command::new(super::cargo_bin()).current_dir(root).args([
            "build",
            "--profile",
            "agent",
            "-p",
            "bulwark-agent",
        ]))?;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let agent = target.join("agent").join("bulwark-agent");
    let mut command = Command::new("bash");
    command
        .current_dir(root)
        .arg(root.join("crates/sim/bench-fleet.sh"))
        .arg(options.agents.to_string())
        .env("NO_BUILD", "1")
        .env("SKIP_STARTUP", "1")
        .env("HEARTBEAT", "60")
        .env("HOLD_SECS", options.hold_secs.to_string())
        .env("RAMP", options.ramp.to_string())
        // The agent figures: resident memory after 10 s and after
        // 5 reconnects; a short CPU window in between.
        .env("AGENT_IDLE_SECS", "10")
        .env("AGENT_CPU_SECS", "20")
        .env("AGENT_RECONNECTS", "5");
    if agent.exists() {
        command.env("AGENT_BIN", &agent);
    } else {
        println!(
            "No {}: measuring the release profile's agent.",
            agent.display()
        );
    }
    // Larger fleets need longer for their first inventories to be stored.
    if options.agents >= 5000 {
        command.env("SETTLE_SECS", "30");
    }
    for (name, value) in &options.flags {
        command.env(name, value);
    }
    super::run(&mut command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_the_flags() {
        let options = parse(&args(
            "--agents 10000 --hold-secs 30 --no-build --skip-storm",
        ))
        .expect("valid");
        assert_eq!(options.agents, 10_000);
        assert_eq!(options.hold_secs, 30);
        assert!(!options.build);
        assert_eq!(options.flags, vec![("SKIP_STORM", "1")]);
        assert_eq!(parse(&[]).expect("defaults").agents, 2000);
        assert!(parse(&args("--agents")).is_err());
        assert!(parse(&args("--agents many")).is_err());
        assert!(parse(&args("--agents 0")).is_err());
        assert!(parse(&args("--fast")).is_err());
    }
}
