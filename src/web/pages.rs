//! What the page templates see: form fields with their values and errors, the step
//! navigation of the profile centre, and the site's identity. Kept apart from the handlers
//! so that a marketer restyling `templates/pages/` has one place that lists the variables.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::{AppError, Site};
use crate::profile::{FORM_ERROR_KEY, FieldErrors, Form, Kind, Profile, Question};

/// One form field as templates see it (`templates/partials/field.hbs`).
#[derive(Debug, Serialize)]
pub struct FieldView {
    pub key: &'static str,
    pub label: &'static str,
    /// email, text, textarea, number, select, radios or checkboxes.
    pub kind: &'static str,
    pub value: String,
    pub required: bool,
    pub error: Option<String>,
    pub options: Vec<OptionView>,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub autocomplete: Option<&'static str>,
}

/// One choice of a select, radio group or checkbox group.
#[derive(Debug, Serialize)]
pub struct OptionView {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// Builds the fields for `questions`, filled with `values(q)`.
pub fn fields(
    form: &Form,
    questions: &[Question],
    values: impl Fn(Question) -> Vec<String>,
    errors: &FieldErrors,
) -> Vec<FieldView> {
    questions
        .iter()
        .map(|&q| {
            let current = values(q);
            let choices = form.choices(q);
            let (kind, min, max) = match q.kind() {
                Kind::Email => ("email", None, None),
                Kind::Text { max } => ("text", None, Some(max as i64)),
                Kind::LongText { max } => ("textarea", None, Some(max as i64)),
                Kind::Number { min, max } => ("number", Some(min), Some(max)),
                Kind::Choice if choices.len() <= 4 => ("radios", None, None),
                Kind::Choice => ("select", None, None),
                Kind::MultiChoice => ("checkboxes", None, None),
            };
            FieldView {
                key: q.key(),
                label: q.label(),
                kind,
                value: if matches!(q.kind(), Kind::MultiChoice) {
                    String::new()
                } else {
                    current.first().cloned().unwrap_or_default()
                },
                required: q == Question::Email,
                error: errors.get(q.key()).cloned(),
                options: choices
                    .iter()
                    .map(|c| OptionView {
                        value: c.value.clone(),
                        label: c.label.clone(),
                        selected: current.iter().any(|v| v.eq_ignore_ascii_case(&c.value)),
                    })
                    .collect(),
                min,
                max,
                autocomplete: (q == Question::Name).then_some("name"),
            }
        })
        .collect()
}

/// The error summary shown above a form: each message, linked to its field, in the order
/// the fields appear (problems with the form as a whole first, consent last).
pub fn error_list(errors: &FieldErrors) -> Vec<Value> {
    let rank = |k: &str| match Question::from_key(k) {
        _ if k == FORM_ERROR_KEY => 0,
        Some(q) => 1 + Question::ALL.iter().position(|x| *x == q).unwrap_or(0),
        None => Question::ALL.len() + 1,
    };
    let mut list: Vec<(&String, &String)> = errors.iter().collect();
    list.sort_by_key(|(k, _)| rank(k));
    list.into_iter()
        .map(|(k, m)| {
            let field = (k != FORM_ERROR_KEY).then_some(k.as_str());
            json!({ "field": field, "message": m })
        })
        .collect()
}

/// The values a person typed, by field, so that a form shown again keeps them.
pub fn submitted(pairs: &[(String, String)], key: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .collect()
}

/// Renders page template `name` with `ctx` plus `site` (name and postal address).
pub fn page(
    site: &Site,
    status: StatusCode,
    name: &str,
    mut ctx: Value,
) -> Result<Response, AppError> {
    ctx["site"] = json!({
        "name": site.project.sender.name(),
        "postal_address": site.project.sender.postal_address,
    });
    let html = site.templates.render(name, &ctx)?;
    Ok((status, Html(html)).into_response())
}

/// A page with a heading, paragraphs and an optional link (confirmations, errors).
pub fn message(
    site: &Site,
    status: StatusCode,
    title: &str,
    paragraphs: &[&str],
    link: Option<(&str, &str)>,
) -> Result<Response, AppError> {
    let link = link.map(|(url, text)| json!({ "url": url, "text": text }));
    page(
        site,
        status,
        "pages/message",
        json!({
            "title": title, "heading": title, "paragraphs": paragraphs, "link": link,
        }),
    )
}

/// The 404 page every unknown path and every refused link gets.
pub fn not_found(site: &Site) -> Result<Response, AppError> {
    message(
        site,
        StatusCode::NOT_FOUND,
        "This link is not valid",
        &[
            "The page or link you followed does not exist, has expired, or was replaced by a newer one.",
            "If you were confirming your subscription, please subscribe again and use the link in the newest email.",
        ],
        Some(("/", "Go to the sign-up form")),
    )
}

/// The profile centre: a step of questions (or the thank-you summary when `step` is None).
pub struct StepPage<'a> {
    pub heading: &'a str,
    pub intro: &'a str,
    pub profile: &'a Profile,
    pub token: &'a str,
    /// Index into the form's steps.
    pub step: Option<usize>,
    /// What the person sent, when the page is shown again with errors.
    pub submitted: Option<&'a [(String, String)]>,
    pub errors: &'a FieldErrors,
}

/// The questions of step `i` that the profile centre shows (not the email address).
pub fn centre_questions(form: &Form, i: usize) -> Vec<Question> {
    form.steps()
        .get(i)
        .map(|s| {
            s.iter()
                .copied()
                .filter(|q| *q != Question::Email)
                .collect()
        })
        .unwrap_or_default()
}

impl StepPage<'_> {
    /// Renders the page with status `status`.
    pub fn render(&self, site: &Site, status: StatusCode) -> Result<Response, AppError> {
        let form = &site.project.form;
        let answers = &self.profile.answers;
        let questions = self
            .step
            .map(|i| centre_questions(form, i))
            .unwrap_or_default();
        let values = |q: Question| match self.submitted {
            Some(pairs) if pairs.iter().any(|(k, _)| k == q.key()) => submitted(pairs, q.key()),
            _ => answers.values(q),
        };
        let steps: Vec<Value> = (0..form.steps().len())
            .filter(|&i| !centre_questions(form, i).is_empty())
            .enumerate()
            .map(|(n, i)| {
                json!({
                    "number": n + 1,
                    "url": format!("/profile/{}?step={}", self.token, i + 1),
                    "current": Some(i) == self.step,
                    "done": centre_questions(form, i).iter().all(|q| answers.is_answered(*q)),
                })
            })
            .collect();
        let summary: Vec<Value> = if self.step.is_none() {
            Question::ALL
                .into_iter()
                .filter(|q| *q != Question::Email && answers.is_answered(*q))
                .map(|q| {
                    let labels: Vec<String> = answers
                        .values(q)
                        .iter()
                        .map(|v| {
                            form.choices(q)
                                .iter()
                                .find(|c| &c.value == v)
                                .map_or_else(|| v.clone(), |c| c.label.clone())
                        })
                        .collect();
                    json!({ "label": q.label(), "value": labels.join(", ") })
                })
                .collect()
        } else {
            Vec::new()
        };
        let last = self.step.is_some_and(|i| {
            (i + 1..form.steps().len()).all(|j| centre_questions(form, j).is_empty())
        });
        page(
            site,
            status,
            "pages/step",
            json!({
                "title": self.heading,
                "heading": self.heading,
                "intro": self.intro,
                "email": self.profile.email.as_str(),
                "action": format!("/profile/{}", self.token),
                "step": self.step.map_or(0, |i| i + 1),
                "steps": steps,
                "fields": fields(form, &questions, values, self.errors),
                "errors": error_list(self.errors),
                "summary": summary,
                "button": if last { "Save" } else { "Save and continue" },
            }),
        )
    }
}
