//! Handing a credential to a child through claude-proc's spawn hook.

use std::io::Write;
use std::os::fd::OwnedFd;

use claude_proc::{ChildSetup, HookError, HookInstance, SpawnHook};

use crate::credential::{Credential, AUTH_VARS};

/// How the child receives the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// In the variable for its kind (`CLAUDE_CODE_OAUTH_TOKEN`, `ANTHROPIC_API_KEY`,
    /// `ANTHROPIC_AUTH_TOKEN`). Visible in `/proc/<pid>/environ` to the same user.
    Env,
    /// On descriptor `n` (3 or more), named by the kind's `*_FILE_DESCRIPTOR` variable; the secret
    /// never sits in the child's environment. Not available for bearer tokens.
    Fd(i32),
}

/// A spawn hook that gives the child one credential and removes every competing credential
/// variable ([`AUTH_VARS`]) from its environment.
#[derive(Debug, Clone)]
pub struct CredentialHook {
    credential: Credential,
    delivery: Delivery,
}

impl CredentialHook {
    /// Hand `credential` over as `delivery` says.
    pub fn new(credential: Credential, delivery: Delivery) -> Self {
        CredentialHook {
            credential,
            delivery,
        }
    }
}

struct Delivered;
impl HookInstance for Delivered {}

impl SpawnHook for CredentialHook {
    fn name(&self) -> &str {
        "claude-auth credential"
    }

    fn prepare(&self, setup: &mut ChildSetup) -> Result<Box<dyn HookInstance>, HookError> {
        for var in AUTH_VARS {
            setup.remove_env(*var);
        }
        let kind = self.credential.kind;
        match self.delivery {
            Delivery::Env => setup.set_env(kind.env_var(), self.credential.secret.expose()),
            Delivery::Fd(target) => {
                let var = kind
                    .fd_var()
                    .ok_or_else(|| format!("a {kind} cannot be passed by descriptor"))?;
                // The token is far smaller than a pipe's buffer: the write never blocks, and the
                // child reads it once from its end.
                let (read, mut write) = std::io::pipe()?;
                write.write_all(self.credential.secret.expose().as_bytes())?;
                drop(write);
                setup.pass_fd(OwnedFd::from(read), target)?;
                setup.set_env(var, target.to_string());
            }
        }
        Ok(Box::new(Delivered))
    }
}
