//! One certificate order (RFC 8555 §7.4), start to end:
//!
//! ```text
//!  account (stored, else created and stored) ─► new order for `domains`
//!    ─► each pending authorization: publish token → key authorization
//!       (Challenges, answered by the plain listener), tell the CA ready
//!    ─► poll until the order is ready (or invalid: the CA's reason is the error)
//!    ─► withdraw the answers ─► new key + CSR (rcgen) ─► finalize
//!    ─► poll for the chain ─► checked against the key and the domains
//! ```
//!
//! Nothing here touches the certificate store or the disk but through the
//! account file: the caller stores and publishes what it returns.

use super::client::Client;
use super::storage::Storage;
use crate::tls::challenge::Challenges;
use crate::tls::pem::{self, LoadedPair};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use std::path::Path;
use std::time::Duration;

/// How long the CA gets to validate the challenges and to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));

/// A certificate just issued: PEM texts (to store) and the checked pair (to serve).
pub(super) struct Issued {
    pub chain: String,
    pub key: String,
    pub pair: LoadedPair,
}

/// What the ACME client needs for an order.
pub(super) struct Orderer<'a> {
    pub directory_url: &'a str,
    pub contact: &'a [String],
    pub domains: &'a [String],
    pub ca_file: Option<&'a Path>,
    pub storage: &'a Storage,
    pub challenges: &'a Challenges,
}

impl Orderer<'_> {
    /// Orders, validates, finalizes and downloads a certificate for the domains.
    pub(super) async fn obtain(&self) -> Result<Issued, String> {
        let account = self.account().await?;
        let ids: Vec<Identifier> = self
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(|e| format!("new order: {e}"))?;

        // Answers stay published until the order is settled, then go.
        let published = Published {
            challenges: self.challenges,
            tokens: Vec::new(),
        };
        let mut published = published;
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(|e| format!("authorization: {e}"))?;
            match a.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("authorization is {other:?}")),
            }
            let mut ch = a
                .challenge(ChallengeType::Http01)
                .ok_or("the CA offers no HTTP-01 challenge")?;
            let token = ch.token.clone();
            self.challenges
                .publish(&token, ch.key_authorization().as_str());
            published.tokens.push(token);
            ch.set_ready()
                .await
                .map_err(|e| format!("challenge ready: {e}"))?;
        }
        let status = order
            .poll_ready(&POLL)
            .await
            .map_err(|e| format!("waiting for validation: {e}"))?;
        if status != OrderStatus::Ready {
            return Err(format!(
                "order {status:?}: {}",
                why_invalid(&mut order).await
            ));
        }
        drop(published);

        let key = rcgen::KeyPair::generate().map_err(|e| format!("new key: {e}"))?;
        let mut params = rcgen::CertificateParams::new(self.domains.to_vec())
            .map_err(|e| format!("CSR: {e}"))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| format!("CSR: {e}"))?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|e| format!("finalize: {e}"))?;
        let chain = order
            .poll_certificate(&POLL)
            .await
            .map_err(|e| format!("download: {e}"))?;

        let key_pem = key.serialize_pem();
        let name = Path::new("(issued certificate)");
        let certs = pem::parse_certs(chain.as_bytes(), name).map_err(|e| e.to_string())?;
        let der = pem::parse_key(key_pem.as_bytes(), name).map_err(|e| e.to_string())?;
        let pair = pem::pair(certs, der, name, name).map_err(|e| e.to_string())?;
        if let Some(missing) = self.domains.iter().find(|d| !pair.info.covers(d)) {
            return Err(format!("the issued certificate does not cover {missing}"));
        }
        Ok(Issued {
            chain,
            key: key_pem,
            pair,
        })
    }

    /// The stored account for this CA, else a new one (stored at once).
    async fn account(&self) -> Result<Account, String> {
        let http = || -> Result<Box<Client>, String> { Ok(Box::new(Client::new(self.ca_file)?)) };
        let stored = self
            .storage
            .load_account(self.directory_url)
            .map_err(|e| e.to_string())?;
        if let Some(json) = stored {
            match serde_json::from_slice::<AccountCredentials>(&json) {
                Ok(creds) => {
                    return Account::builder_with_http(http()?)
                        .from_credentials(creds)
                        .await
                        .map_err(|e| format!("account: {e}"));
                }
                // Never quote the file: it holds the account key.
                Err(_) => tracing::warn!(
                    dir = %self.storage.dir().display(),
                    "the stored ACME account is unreadable; creating a new one"
                ),
            }
        }
        let contact: Vec<&str> = self.contact.iter().map(String::as_str).collect();
        let (account, creds) = Account::builder_with_http(http()?)
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.directory_url.to_string(),
                None,
            )
            .await
            .map_err(|e| format!("new account: {e}"))?;
        let json = serde_json::to_vec(&creds).map_err(|e| format!("account: {e}"))?;
        self.storage
            .save_account(self.directory_url, &json)
            .map_err(|e| e.to_string())?;
        tracing::info!(id = account.id(), "ACME account created");
        Ok(account)
    }
}

/// Published challenge answers, withdrawn when dropped (on success and on
/// every error path alike).
struct Published<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for t in &self.tokens {
            self.challenges.withdraw(t);
        }
    }
}

/// The CA's reasons for refusing an order, from its failed challenges.
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(Ok(a)) = authzs.next().await {
        for c in &a.challenges {
            if let Some(p) = &c.error {
                reasons.push(format!("{}: {p}", a.identifier()));
            }
        }
    }
    if reasons.is_empty() {
        "no reason given".into()
    } else {
        reasons.join("; ")
    }
}
