p='crates/agent/src/install.rs'; s=open(p).read()
old="""#[cfg(test)]
mod tests {
    use super::*;

    fn layout(root: &Path) -> Layout {"""
new="""/// Makes the account unprivileged remote shells run as (RFD 0015) when it
/// is missing: a system account with a home and `/bin/sh`, no password
/// (nobody logs in as it but through a granted shell). Only on the live
/// system (an image being built under `--root-dir` makes its own). True
/// when it was made now.
pub fn ensure_shell_account(layout: &Layout, name: &str) -> io::Result<bool> {
    if !layout.is_live_system() || account_exists(name)? {
        return Ok(false);
    }
    run_tool(
        "useradd",
        &["--system", "--create-home", "--home-dir", &format!("/var/lib/{name}"), "--shell", "/bin/sh", name],
    )?;
    Ok(true)
}

/// Removes that account and its home, if it is there (live system only).
pub fn remove_shell_account(layout: &Layout, name: &str) -> io::Result<bool> {
    if !layout.is_live_system() || !account_exists(name)? {
        return Ok(false);
    }
    run_tool("userdel", &["--remove", name])?;
    Ok(true)
}

fn account_exists(name: &str) -> io::Result<bool> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    Ok(passwd
        .lines()
        .any(|l| l.split(':').next() == Some(name)))
}

fn run_tool(tool: &str, args: &[&str]) -> io::Result<()> {
    let output = Command::new(tool)
        .args(args)
        .env_clear()
        .env("PATH", crate::supervisor::JOB_PATH)
        .output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`{tool} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(root: &Path) -> Layout {"""
assert old in s; s=s.replace(old,new); open(p,'w').write(s)
p='crates/agent/src/main.rs'; s=open(p).read()
old="""    report(done.state_dir_created, "state directory", &layout.state_dir);
"""
new="""    report(done.state_dir_created, "state directory", &layout.state_dir);
    let account = bulwark_agent::shell::DEFAULT_SHELL_ACCOUNT;
    if bulwark_agent::install::ensure_shell_account(layout, account)
        .with_context(|| format!("cannot make the {account} account"))?
    {
        println!("Installed account          {account} (unprivileged remote shells)");
    }
"""
assert old in s; s=s.replace(old,new)
old="""    report(removed.binary, "binary", &layout.binary);
"""
new="""    report(removed.binary, "binary", &layout.binary);
    let account = bulwark_agent::shell::DEFAULT_SHELL_ACCOUNT;
    match bulwark_agent::install::remove_shell_account(layout, account) {
        Ok(true) => println!("Removed  account          {account}"),
        Ok(false) => {}
        Err(error) => warn!(%error, "Cannot remove the shell account."),
    }
"""
assert old in s; s=s.replace(old,new)
open(p,'w').write(s)
