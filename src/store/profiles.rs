//! Profile, consent and form-view queries.

use super::HookNote;
use crate::event::HookEvent;
use std::sync::LazyLock;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::sending::Claimed;
use super::{Store, StoreError, now};
use crate::profile::{Answers, Email, Profile, Question, Status};

/// The columns `profile_from_row` reads, for `concat!` into queries.
macro_rules! profile_columns {
    () => {
        "id, email, status, name, role, products, employees, industry, business_need, challenge, \
         pcs, servers, engagement, topics, frequency, confirm_nonce, pending_nonce, created_at, \
         updated_at"
    };
}

/// Where an opt-in or opt-out came from, kept with the consent record as proof.
#[derive(Debug, Clone, Default)]
pub struct ConsentMeta {
    /// `form`, `profile-centre`, `import:NAME`, `list-unsubscribe`, ...
    pub source: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub form_version: Option<String>,
}

/// What a submission of the opt-in form did, and so which email to send.
#[derive(Debug, Clone)]
pub enum OptIn {
    /// A new pending profile: send the confirmation.
    New(Profile),
    /// Still pending from an earlier submission: send the confirmation again.
    StillPending(Profile),
    /// Already subscribed: nothing to confirm; remind them of their profile centre.
    AlreadySubscribed(Profile),
    /// Unsubscribed, bounced or complained before: subscribed again only after a fresh
    /// confirmation.
    Returning(Profile),
    /// A known address that asked for as many confirmation emails as the daily limit
    /// allows already: nothing was stored and nothing is sent.
    OverDailyLimit(Profile),
}

impl OptIn {
    /// The profile, whatever happened.
    pub fn profile(&self) -> &Profile {
        match self {
            OptIn::New(p)
            | OptIn::StillPending(p)
            | OptIn::AlreadySubscribed(p)
            | OptIn::Returning(p)
            | OptIn::OverDailyLimit(p) => p,
        }
    }
}

/// What following a confirmation link did.
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub profile: Profile,
    /// False when the link had been followed before (confirmation is idempotent).
    pub newly_confirmed: bool,
}

/// How many answers a profile row holds: every question but `email`.
const ANSWERS: usize = Question::ALL.len() - 1;

/// The answer columns, in the order [`BindAnswers`] binds them: every question but `email`,
/// in `Question::ALL`'s order (a question's key is its column's name).
fn answer_columns() -> impl Iterator<Item = &'static str> {
    Question::ALL.iter().skip(1).map(|q| q.key())
}

/// `name, role, ...`: the answer columns, for INSERT column lists.
static COLUMNS: LazyLock<String> =
    LazyLock::new(|| answer_columns().collect::<Vec<_>>().join(", "));

/// `SET` items over the answer columns, `item(column, its parameter number)`, the
/// parameters numbered from `first` in column order; joined with commas.
fn set_answers(first: usize, item: impl Fn(&str, usize) -> String) -> String {
    answer_columns()
        .enumerate()
        .map(|(i, c)| item(c, first + i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `name = NULL, role = NULL, ...`: every answer removed (erasure).
pub(super) static NO_ANSWERS: LazyLock<String> =
    LazyLock::new(|| set_answers(0, |c, _| format!("{c} = NULL")));

/// Binds the answers in column order (see [`answer_columns`]); every profile write uses it.
trait BindAnswers<'q>: Sized {
    fn bind_answers(self, a: &'q Answers) -> Self;
}

/// One body for both query types sqlx offers.
macro_rules! impl_bind_answers {
    ($($generic:ident)?; $ty:ty) => {
        impl<'q $(, $generic)?> BindAnswers<'q> for $ty {
            fn bind_answers(self, a: &'q Answers) -> Self {
                self.bind(a.name.as_deref())
                    .bind(a.role.as_deref())
                    .bind(list_json(&a.products))
                    .bind(a.employees)
                    .bind(a.industry.as_deref())
                    .bind(a.business_need.as_deref())
                    .bind(a.challenge.as_deref())
                    .bind(a.pcs)
                    .bind(a.servers)
                    .bind(a.engagement.as_deref())
                    .bind(list_json(&a.topics))
                    .bind(a.frequency.as_deref())
            }
        }
    };
}

impl_bind_answers!(; sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>);
impl_bind_answers!(O; sqlx::query::QueryScalar<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>>);

fn new_nonce() -> String {
    let bytes: [u8; 9] = rand::random();
    hex::encode(bytes)
}

/// A list answer as stored: a JSON array.
fn list_json(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref()
        .map(|p| serde_json::to_string(p).expect("strings serialise"))
}

/// A stored list answer (`column` names it in the message when it is not a JSON array).
fn list_from(row: &AnyRow, column: &str) -> Result<Option<Vec<String>>, StoreError> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|p| {
        serde_json::from_str::<Vec<String>>(&p)
            .map_err(|e| StoreError::Corrupt(format!("profiles.{column} {p:?}: {e}")))
    })
    .transpose()
}

pub(super) fn profile_from_row(row: &AnyRow) -> Result<Profile, StoreError> {
    let email: String = row.try_get("email")?;
    let status: String = row.try_get("status")?;
    Ok(Profile {
        id: row.try_get("id")?,
        email: Email::parse(&email)
            .map_err(|e| StoreError::Corrupt(format!("profiles.email {email:?}: {e}")))?,
        status: Status::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("profiles.status {status:?}")))?,
        answers: Answers {
            name: row.try_get("name")?,
            role: row.try_get("role")?,
            products: list_from(row, "products")?,
            employees: row.try_get("employees")?,
            industry: row.try_get("industry")?,
            business_need: row.try_get("business_need")?,
            challenge: row.try_get("challenge")?,
            pcs: row.try_get("pcs")?,
            servers: row.try_get("servers")?,
            engagement: row.try_get("engagement")?,
            topics: list_from(row, "topics")?,
            frequency: row.try_get("frequency")?,
        },
        confirm_nonce: row.try_get("confirm_nonce")?,
        pending_nonce: row.try_get("pending_nonce")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A profile as the transaction `conn` sees it.
async fn profile_in<'c, E>(conn: E, id: i64) -> Result<Profile, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql = concat!(
        "SELECT ",
        profile_columns!(),
        " FROM profiles WHERE id = $1"
    );
    profile_from_row(&sqlx::query(sql).bind(id).fetch_one(conn).await?)
}

/// Inserts a profile for an address not seen before (`confirmed_at` set when it starts
/// `subscribed`); the profile as stored (no second read), or `None` when the address is
/// known.
async fn insert_new_profile<'c, E>(
    conn: E,
    email: &Email,
    answers: &Answers,
    status: Status,
    source: &str,
    at: i64,
) -> Result<Option<Profile>, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    // $1 address, $2 its key, the answers, then nonce, source, time and status.
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let (n, s, t, st) = (ANSWERS + 3, ANSWERS + 4, ANSWERS + 5, ANSWERS + 6);
        format!(
            "INSERT INTO profiles (email, email_key, status, {}, confirm_nonce, source, created_at, \
             updated_at, confirmed_at) VALUES ($1, $2, ${st}, {}, ${n}, ${s}, ${t}, ${t}, \
             CASE WHEN ${st} = 'subscribed' THEN ${t} END) \
             ON CONFLICT (email_key) DO NOTHING RETURNING {}",
            *COLUMNS,
            super::params(3, ANSWERS),
            profile_columns!()
        )
    });
    let row = sqlx::query(SQL.as_str())
        .bind(email.as_str())
        .bind(email.key())
        .bind_answers(answers)
        .bind(new_nonce())
        .bind(source)
        .bind(at)
        .bind(status.as_str())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(profile_from_row).transpose()
}

pub(super) async fn insert_consent<'c, E>(
    conn: E,
    profile_id: i64,
    action: &str,
    meta: &ConsentMeta,
    at: i64,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO consents (profile_id, action, source, ip, user_agent, form_version, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(profile_id)
    .bind(action)
    .bind(&meta.source)
    .bind(meta.ip.as_deref())
    .bind(meta.user_agent.as_deref())
    .bind(meta.form_version.as_deref())
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// The profile with this id.
    pub async fn profile(&self, id: i64) -> Result<Option<Profile>, StoreError> {
        let sql = concat!(
            "SELECT ",
            profile_columns!(),
            " FROM profiles WHERE id = $1"
        );
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(profile_from_row).transpose()
    }

    /// The profile a personal link (profile centre, unsubscribe, feedback) names: `None`
    /// once the person was erased, so that erasure revokes every link they were sent.
    pub async fn linked_profile(&self, id: i64) -> Result<Option<Profile>, StoreError> {
        let sql = concat!(
            "SELECT ",
            profile_columns!(),
            " FROM profiles WHERE id = $1 AND COALESCE(source, '') <> 'erased'"
        );
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(profile_from_row).transpose()
    }

    /// The profile of this address (compared without regard to case).
    pub async fn profile_by_email(&self, email: &Email) -> Result<Option<Profile>, StoreError> {
        let sql = concat!(
            "SELECT ",
            profile_columns!(),
            " FROM profiles WHERE email_key = $1"
        );
        let row = sqlx::query(sql)
            .bind(email.key())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(profile_from_row).transpose()
    }

    /// Records an opt-in form submission in one transaction: creates the pending profile
    /// with its answers or, for a known address, keeps the answers waiting for this
    /// request's confirmation link (which then fills in only the answers the profile did
    /// not have), appends a consent record and queues the confirmation email (see
    /// [`super::CONFIRMATION`]). Someone who left is not subscribed again here: that takes a
    /// confirmation.
    ///
    /// `per_day` caps the requests an address makes in a day (counted from its consent
    /// records): a known address at the cap gets [`OptIn::OverDailyLimit`] and nothing is
    /// written. A new address cannot be at the cap, so it costs no extra query.
    ///
    /// `claim` (a lease in seconds) writes the confirmation's delivery already claimed by
    /// the caller, whose own worker then sends it without claiming it from the queue; the
    /// claimed delivery comes back. Should that process die first, the lease runs out and
    /// any worker takes it. Without `claim`, or when a worker is sending this person's
    /// confirmation at this moment, the delivery waits in the queue.
    pub async fn request_opt_in(
        &self,
        email: &Email,
        answers: &Answers,
        meta: &ConsentMeta,
        per_day: Option<u32>,
        claim: Option<i64>,
    ) -> Result<(OptIn, Option<Claimed>), StoreError> {
        let at = now();
        let mut tx = self.begin().await?;
        // The write comes first so that SQLite takes its write lock before any read.
        let inserted =
            insert_new_profile(&mut *tx, email, answers, Status::Pending, &meta.source, at).await?;

        let id = match &inserted {
            Some(p) => p.id,
            None => {
                if let Some(limit) = per_day {
                    // By the profile's own consent records (their index), not by all of the
                    // day's requests: on a fresh PostgreSQL table the planner took the
                    // (action, time) index and counted every request of the day, each time.
                    let (known, asked): (i64, i64) = sqlx::query_as(
                        "SELECT p.id, (SELECT COUNT(*) FROM consents c WHERE c.profile_id = p.id \
                         AND c.action = 'opt_in_requested' AND c.created_at >= $1) \
                         FROM profiles p WHERE p.email_key = $2",
                    )
                    // (Numbered in the order they appear: SQLite numbers `$N` that way.)
                    .bind(at - 86_400)
                    .bind(email.key())
                    .fetch_one(&mut *tx)
                    .await?;
                    if asked >= i64::from(limit) {
                        let profile = profile_in(&mut *tx, known).await?;
                        return Ok((OptIn::OverDailyLimit(profile), None));
                    }
                }
                // A known address: the answers wait for this request's confirmation link
                // (a stranger who knows the address cannot fill in the person's profile).
                let waiting = *answers != Answers::default();
                let id: i64 = sqlx::query_scalar(
                    "UPDATE profiles SET pending_answers = $2, pending_nonce = $3, \
                     confirm_nonce = COALESCE(confirm_nonce, $4), updated_at = $5 \
                     WHERE email_key = $1 RETURNING id",
                )
                .bind(email.key())
                .bind(waiting.then(|| serde_json::to_string(answers).expect("answers serialise")))
                .bind(waiting.then(new_nonce))
                .bind(new_nonce())
                .bind(at)
                .fetch_one(&mut *tx)
                .await?;
                id
            }
        };
        insert_consent(&mut *tx, id, "opt_in_requested", meta, at).await?;
        // The confirmation email: the person's delivery of the system campaign, queued (or
        // claimed, see `claim`) now, or again (a new request wants a new email); if a worker
        // is sending it right now, it is queued again once that send is recorded (`again_at`).
        let (status, attempts) = match claim {
            Some(_) => ("sending", 1i64),
            None => ("queued", 0i64),
        };
        let confirmation: Option<Claimed> = sqlx::query_as(
            "INSERT INTO deliveries (run_id, profile_id, campaign, status, attempts, next_attempt_at, created_at, priority, lease_until) \
             SELECT id, $1, campaign, $5, $6, $2, $2, 0, $7 FROM campaign_runs WHERE campaign = $3 AND period_key = $4 \
             ON CONFLICT (run_id, profile_id) DO UPDATE SET status = $5, attempts = $6, \
             next_attempt_at = $2, created_at = $2, lease_until = $7, last_error = NULL, message_id = NULL, sent_at = NULL \
             WHERE deliveries.status <> 'sending' \
             RETURNING id, run_id, profile_id, campaign, attempts",
        )
        .bind(id)
        .bind(at)
        .bind(super::sending::CONFIRMATION)
        .bind(super::sending::STANDING)
        .bind(status)
        .bind(attempts)
        .bind(claim.map(|lease| at + lease))
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() && confirmation.is_none() {
            // The delivery is in a worker's hands (the upsert skipped it): queue it again
            // once that send is recorded. Not when this request queued or claimed it: the
            // delivery is `sending` then too, with this request's claim, and marking it
            // would send a second email after the first. (A new profile has no delivery
            // that could be in a worker's hands.)
            sqlx::query(
                "UPDATE deliveries SET again_at = $2 WHERE profile_id = $1 AND campaign = $3 AND status = 'sending'",
            )
            .bind(id)
            .bind(at)
            .bind(super::sending::CONFIRMATION)
            .execute(&mut *tx)
            .await?;
        }
        // A new profile is as its insert returned it: nothing since changed it.
        let fresh = inserted.is_some();
        let profile = match inserted {
            Some(p) => p,
            None => profile_in(&mut *tx, id).await?,
        };
        self.commit(tx).await?;
        let outcome = match (fresh, profile.status) {
            (true, _) => OptIn::New(profile),
            (false, Status::Pending) => OptIn::StillPending(profile),
            (false, Status::Subscribed) => OptIn::AlreadySubscribed(profile),
            (false, _) => OptIn::Returning(profile),
        };
        Ok((outcome, confirmation.filter(|_| claim.is_some())))
    }

    /// A new subscriber whose consent another system collected (the API without double
    /// opt-in): stored `subscribed` with an `opt_in` consent record naming that source, in
    /// one transaction. `None` when the address is known (nothing changed).
    pub async fn subscribe_with_consent(
        &self,
        email: &Email,
        answers: &Answers,
        meta: &ConsentMeta,
    ) -> Result<Option<Profile>, StoreError> {
        let at = now();
        let mut tx = self.begin().await?;
        let inserted = insert_new_profile(
            &mut *tx,
            email,
            answers,
            Status::Subscribed,
            &meta.source,
            at,
        )
        .await?;
        let Some(profile) = inserted else {
            return Ok(None);
        };
        insert_consent(&mut *tx, profile.id, "opt_in", meta, at).await?;
        let note = subscribed_note(&profile, &meta.source);
        self.queue_hooks(&mut tx, HookEvent::Subscribed, &[note], at)
            .await?;
        self.commit(tx).await?;
        Ok(Some(profile))
    }

    /// Follows a confirmation link: the profile becomes subscribed if the link's nonce is the
    /// current one. Following it again changes nothing and still succeeds. `None` when the
    /// link no longer applies (a newer request, or an unsubscribe, replaced it).
    pub async fn confirm(
        &self,
        id: i64,
        nonce: &str,
        meta: &ConsentMeta,
    ) -> Result<Option<Confirmation>, StoreError> {
        let at = now();
        let (nonce, pending) = crate::profile::split_confirmation_nonce(nonce);
        let mut tx = self.begin().await?;
        let changed: Option<i64> = sqlx::query_scalar(
            "UPDATE profiles SET status = 'subscribed', confirmed_at = $3, unsubscribed_at = NULL, \
             updated_at = $3 WHERE id = $1 AND confirm_nonce = $2 AND status <> 'subscribed' RETURNING id",
        )
        .bind(id)
        .bind(nonce)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        if changed.is_some() {
            insert_consent(&mut *tx, id, "opt_in_confirmed", meta, at).await?;
        }
        if let Some(pending) = pending {
            // The answers of the request this link was sent for fill the profile's gaps.
            let waiting: Option<String> = sqlx::query_scalar(
                "SELECT pending_answers FROM profiles WHERE id = $1 AND confirm_nonce = $2 AND pending_nonce = $3",
            )
            .bind(id)
            .bind(nonce)
            .bind(pending)
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
            if let Some(json) = waiting {
                let answers: Answers = serde_json::from_str(&json).map_err(|e| {
                    StoreError::Corrupt(format!("profiles.pending_answers {json:?}: {e}"))
                })?;
                // The waiting answers fill only the gaps: $2... in column order, then the time.
                static SQL: LazyLock<String> = LazyLock::new(|| {
                    format!(
                        "UPDATE profiles SET {}, pending_answers = NULL, pending_nonce = NULL, \
                         updated_at = ${} WHERE id = $1",
                        set_answers(2, |c, n| format!("{c} = COALESCE({c}, ${n})")),
                        ANSWERS + 2
                    )
                });
                sqlx::query(SQL.as_str())
                    .bind(id)
                    .bind_answers(&answers)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let sql = concat!(
            "SELECT ",
            profile_columns!(),
            " FROM profiles WHERE id = $1"
        );
        let row = sqlx::query(sql).bind(id).fetch_optional(&mut *tx).await?;
        let Some(profile) = row.as_ref().map(profile_from_row).transpose()? else {
            self.commit(tx).await?;
            return Ok(None);
        };
        if changed.is_some() {
            let note = subscribed_note(&profile, &meta.source);
            self.queue_hooks(&mut tx, HookEvent::Subscribed, &[note], at)
                .await?;
        }
        self.commit(tx).await?;
        let current = profile.confirm_nonce.as_deref() == Some(nonce);
        Ok(
            (current && profile.status == Status::Subscribed).then_some(Confirmation {
                profile,
                newly_confirmed: changed.is_some(),
            }),
        )
    }

    /// Takes a profile off the list: status `unsubscribed`, the confirmation nonce cleared
    /// (old confirmation links stop working) and an `opt_out` consent record. Returns
    /// false when the profile was already unsubscribed (idempotent) or does not exist. An
    /// `unsubscribe` event names the campaign whose link was used, for response rates.
    pub async fn unsubscribe(
        &self,
        id: i64,
        meta: &ConsentMeta,
        origin: &super::EventOrigin,
    ) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.begin().await?;
        let changed: Option<i64> = sqlx::query_scalar(
            "UPDATE profiles SET status = 'unsubscribed', confirm_nonce = NULL, unsubscribed_at = $2, \
             updated_at = $2 WHERE id = $1 AND status <> 'unsubscribed' RETURNING id",
        )
        .bind(id)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        if changed.is_some() {
            insert_consent(&mut *tx, id, "opt_out", meta, at).await?;
            sqlx::query(
                "INSERT INTO events (profile_id, kind, campaign, run_id, delivery_id, user_agent, created_at) \
                 VALUES ($1, 'unsubscribe', $2, $5, $6, $3, $4)",
            )
                .bind(id)
                .bind(origin.campaign.as_deref())
                .bind(meta.user_agent.as_deref())
                .bind(at)
                .bind(origin.run_id)
                .bind(origin.delivery_id)
                .execute(&mut *tx)
                .await?;
            let note = HookNote {
                profile_id: id,
                data: serde_json::json!({ "campaign": origin.campaign, "source": meta.source }),
            };
            self.queue_hooks(&mut tx, HookEvent::Unsubscribed, &[note], at)
                .await?;
        }
        self.commit(tx).await?;
        Ok(changed.is_some())
    }

    /// Changes a person's answers from their own signed link (the profile centre): a given
    /// answer replaces the stored one, and each question in `cleared` is emptied (the
    /// person removed that answer). Records a `profile_update` event naming the fields.
    pub async fn update_answers(
        &self,
        id: i64,
        answers: &Answers,
        cleared: &[crate::profile::Question],
    ) -> Result<Option<Profile>, StoreError> {
        let at = now();
        // ",name,products," : which columns become NULL (one statement for both backends).
        let mask = format!(
            ",{},",
            cleared
                .iter()
                .map(|q| q.key())
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut tx = self.begin().await?;
        // $2... the answers in column order, then the time and the mask of cleared columns.
        static SQL: LazyLock<String> = LazyLock::new(|| {
            let mask = ANSWERS + 3;
            format!(
                "UPDATE profiles SET {}, updated_at = ${} WHERE id = $1 RETURNING id",
                set_answers(2, |c, n| format!(
                    "{c} = CASE WHEN ${mask} LIKE '%,{c},%' THEN NULL ELSE COALESCE(${n}, {c}) END"
                )),
                ANSWERS + 2
            )
        });
        let updated: Option<i64> = sqlx::query_scalar(SQL.as_str())
            .bind(id)
            .bind_answers(answers)
            .bind(at)
            .bind(mask)
            .fetch_optional(&mut *tx)
            .await?;
        if updated.is_none() {
            tx.rollback().await?;
            return Ok(None);
        }
        let fields: Vec<&str> = crate::profile::Question::ALL
            .into_iter()
            .filter(|q| {
                *q != crate::profile::Question::Email
                    && (answers.is_answered(*q) || cleared.contains(q))
            })
            .map(|q| q.key())
            .collect();
        if !fields.is_empty() {
            sqlx::query("INSERT INTO events (profile_id, kind, value, created_at) VALUES ($1, 'profile_update', $2, $3)")
                .bind(id)
                .bind(fields.join(","))
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        let profile = profile_in(&mut *tx, id).await?;
        if !fields.is_empty() {
            let note = HookNote {
                profile_id: id,
                data: serde_json::json!({ "changed": fields, "answers": profile.answers.to_json() }),
            };
            self.queue_hooks(&mut tx, HookEvent::ProfileUpdated, &[note], at)
                .await?;
        }
        self.commit(tx).await?;
        Ok(Some(profile))
    }

    /// The consent records of a profile, oldest first: `(action, source, form_version, at)`.
    pub async fn consents(
        &self,
        profile_id: i64,
    ) -> Result<Vec<(String, String, Option<String>, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT action, source, form_version, created_at FROM consents WHERE profile_id = $1 ORDER BY id",
        )
        .bind(profile_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect()
    }

    /// Counts one view of the opt-in form for today (UTC).
    pub async fn count_form_view(&self) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO form_views (day, views) VALUES ($1, 1) \
             ON CONFLICT (day) DO UPDATE SET views = form_views.views + 1",
        )
        .bind(now() / 86_400)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every subscribed profile, in id order, streamed: an audience of any size is read
    /// without holding it in memory.
    pub fn subscribed_profiles(
        &self,
    ) -> impl futures_util::Stream<Item = Result<Profile, StoreError>> + '_ {
        use futures_util::StreamExt;
        const SQL: &str = concat!(
            "SELECT ",
            profile_columns!(),
            " FROM profiles WHERE status = 'subscribed' ORDER BY id"
        );
        sqlx::query(SQL)
            .fetch(&self.pool)
            .map(|row| profile_from_row(&row?))
    }

    /// Inserts many new profiles with one status in one transaction, 500 rows per
    /// statement; addresses already stored are skipped. For demo data and benchmarks:
    /// no consent records are written, so never use it for real opt-ins.
    pub async fn insert_profiles(
        &self,
        rows: &[(Email, Answers)],
        status: Status,
        source: &str,
    ) -> Result<u64, StoreError> {
        let at = now();
        let mut tx = self.begin().await?;
        let mut inserted = 0;
        // Per row: the address, its key, the status, the answers, the source, the time twice.
        let per_row = ANSWERS + 6;
        for chunk in rows.chunks(super::rows_per_statement(per_row)) {
            let mut sql = format!(
                "INSERT INTO profiles (email, email_key, status, {}, source, created_at, updated_at) VALUES ",
                *COLUMNS
            );
            sql.push_str(&super::value_rows(1, chunk.len(), per_row));
            sql.push_str(" ON CONFLICT (email_key) DO NOTHING");
            let sql = self.positional(sql);
            let mut q = sqlx::query(&sql);
            for (email, a) in chunk {
                q = q
                    .bind(email.as_str())
                    .bind(email.key())
                    .bind(status.as_str())
                    .bind_answers(a)
                    .bind(source)
                    .bind(at)
                    .bind(at);
            }
            inserted += q.execute(&mut *tx).await?.rows_affected();
        }
        self.commit(tx).await?;
        Ok(inserted)
    }

    /// How many profiles the store holds.
    pub async fn profile_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM profiles")
            .fetch_one(&self.pool)
            .await?)
    }
}

impl Store {
    /// Imports rows from an existing list in one transaction: new addresses become
    /// subscribed profiles; known ones get the answers the row has (empty cells erase
    /// nothing) and keep their status, so an import never re-subscribes anyone. Every row
    /// appends an `imported` consent record with `source`. Returns the rows written.
    pub async fn import_rows(
        &self,
        rows: &[(Email, Answers)],
        source: &str,
    ) -> Result<u64, StoreError> {
        let at = now();
        let mut tx = self.begin().await?;
        let mut written = 0;
        // Per row: the address, its key, the answers, the source and the time twice; a known
        // address gets the answers the row has (an empty cell erases nothing).
        static UPSERT: LazyLock<String> = LazyLock::new(|| {
            format!(
                "ON CONFLICT (email_key) DO UPDATE SET {}, updated_at = excluded.updated_at RETURNING id",
                set_answers(0, |c, _| format!(
                    "{c} = COALESCE(excluded.{c}, profiles.{c})"
                ))
            )
        });
        let per_row = ANSWERS + 5;
        for chunk in rows.chunks(super::rows_per_statement(per_row)) {
            let sql = self.positional(format!(
                "INSERT INTO profiles (email, email_key, status, {}, source, created_at, updated_at) \
                 VALUES {} {}",
                *COLUMNS,
                super::shaped_rows(
                    1,
                    chunk.len(),
                    &format!("?, ?, 'subscribed'{}", ", ?".repeat(per_row - 2))
                ),
                *UPSERT
            ));
            let mut q = sqlx::query_scalar::<_, i64>(&sql);
            for (email, a) in chunk {
                q = q
                    .bind(email.as_str())
                    .bind(email.key())
                    .bind_answers(a)
                    .bind(source)
                    .bind(at)
                    .bind(at);
            }
            let ids = q.fetch_all(&mut *tx).await?;
            let consents_sql = self.positional(format!(
                "INSERT INTO consents (profile_id, action, source, created_at) VALUES {}",
                super::shaped_rows(1, ids.len(), "?, 'imported', ?, ?")
            ));
            let mut c = sqlx::query(&consents_sql);
            for id in &ids {
                c = c.bind(*id).bind(source).bind(at);
            }
            c.execute(&mut *tx).await?;
            written += ids.len() as u64;
        }
        self.commit(tx).await?;
        Ok(written)
    }
}

impl Store {
    /// Marks the addresses of a batch as seen by import `import_id`; returns, for those seen
    /// before, (index in `rows`, line where it was first seen).
    pub async fn import_seen(
        &self,
        import_id: &str,
        rows: &[(&Email, u64)],
    ) -> Result<Vec<(usize, i64)>, StoreError> {
        let mut repeats = Vec::new();
        for (chunk_no, chunk) in rows.chunks(super::rows_per_statement(3)).enumerate() {
            let sql = self.positional(format!(
                "INSERT INTO import_seen (import_id, email_key, line) VALUES {} ON CONFLICT (import_id, email_key) DO NOTHING RETURNING email_key",
                super::value_rows(1, chunk.len(), 3)
            ));
            let mut q = sqlx::query_scalar::<_, String>(&sql);
            for (email, line) in chunk {
                q = q.bind(import_id).bind(email.key()).bind(*line as i64);
            }
            let inserted: std::collections::HashSet<String> =
                q.fetch_all(&self.pool).await?.into_iter().collect();
            for (i, (email, _)) in chunk.iter().enumerate() {
                let key = email.key();
                if !inserted.contains(&key) {
                    let first: i64 = sqlx::query_scalar(
                        "SELECT line FROM import_seen WHERE import_id = $1 AND email_key = $2",
                    )
                    .bind(import_id)
                    .bind(&key)
                    .fetch_one(&self.pool)
                    .await?;
                    repeats.push((chunk_no * super::rows_per_statement(3) + i, first));
                }
            }
        }
        Ok(repeats)
    }

    /// Forgets what import `import_id` saw.
    pub async fn import_done(&self, import_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM import_seen WHERE import_id = $1")
            .bind(import_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// What a `subscribed` webhook says besides the address.
fn subscribed_note(profile: &Profile, source: &str) -> HookNote {
    HookNote {
        profile_id: profile.id,
        data: serde_json::json!({ "source": source, "answers": profile.answers.to_json() }),
    }
}
