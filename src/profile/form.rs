//! The progressive-profiling form: which questions are asked at each step, the choice
//! lists, and the parser that turns a submitted form into answers or field errors.

use std::collections::{BTreeMap, HashMap};

use super::email::Email;
use super::question::{Answers, Kind, Question, Value};

/// A value a choice question accepts, with the text shown to people.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Choice {
    pub value: String,
    pub label: String,
}

/// Form field names that are not questions but that the form uses.
pub const CONSENT_FIELD: &str = "consent";
/// The hidden field bots fill in and people never see.
pub const HONEYPOT_FIELD: &str = "website";
/// The profile centre's hidden field naming the step being answered.
pub const STEP_FIELD: &str = "step";

/// The resolved, checked form from `campaigns.toml` `[form]`.
#[derive(Debug, Clone)]
pub struct Form {
    version: String,
    steps: Vec<Vec<Question>>,
    choices: HashMap<Question, Vec<Choice>>,
}

/// A form definition that cannot work; the message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("question \"{0}\" is in more than one step; ask each question once")]
    Repeated(&'static str),
    #[error("step {0} is empty; remove it or list question keys in it")]
    EmptyStep(usize),
    #[error("\"{0}\" has built-in choices ({1}); remove it from [form.choices]")]
    BuiltinChoices(&'static str, String),
    #[error(
        "\"{0}\" is not a choice question; only products, industry and business_need take choices"
    )]
    NotAChoice(&'static str),
    #[error(
        "\"{0}\" is asked in the form but has no choices; add {0} = [\"...\"] to [form.choices]"
    )]
    NoChoices(&'static str),
    #[error("choice \"{1}\" of \"{0}\" is listed twice")]
    DuplicateChoice(&'static str, String),
    #[error(
        "choice values of \"{0}\" must be non-empty, without commas or control characters: {1:?}"
    )]
    BadChoice(&'static str, String),
}

/// Field-level problems with a submission: field key (or `_form` for the form as a whole)
/// to the message shown next to it.
pub type FieldErrors = BTreeMap<String, String>;

/// Key under which problems that belong to no single field are reported.
pub const FORM_ERROR_KEY: &str = "_form";

/// What a submission is: the opt-in form needs an email and consent, the profile centre
/// takes answers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Subscribe,
    ProfileCentre,
}

/// A parsed submission.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub email: Option<Email>,
    pub answers: Answers,
    pub consent: bool,
    /// The honeypot was filled in: a bot. Nothing is stored, success is pretended.
    pub honeypot: bool,
    /// The profile-centre step the person was on, when it was sent.
    pub step: Option<usize>,
    pub errors: FieldErrors,
}

impl Form {
    /// Checks and builds a form. `steps` are question lists in order; `choices` give the lists
    /// for `products`, `industry` and `business_need`. `email` is always asked first.
    pub fn new(
        version: Option<String>,
        steps: Vec<Vec<Question>>,
        configured: Vec<(Question, Vec<Choice>)>,
    ) -> Result<Form, FormError> {
        let mut seen = HashMap::new();
        let mut steps = steps;
        for (i, step) in steps.iter().enumerate() {
            if step.is_empty() {
                return Err(FormError::EmptyStep(i + 1));
            }
            for q in step {
                if seen.insert(*q, i).is_some() {
                    return Err(FormError::Repeated(q.key()));
                }
            }
        }
        // Email is the identity: it is always asked, and asked first.
        for later in steps.iter_mut().skip(1) {
            later.retain(|q| *q != Question::Email);
        }
        steps.retain(|s| !s.is_empty());
        match steps.first_mut() {
            Some(first) if !first.contains(&Question::Email) => first.insert(0, Question::Email),
            None => steps.push(vec![Question::Email]),
            _ => {}
        }

        let mut choices = HashMap::new();
        for q in Question::ALL {
            if let Some(builtin) = q.builtin_choices() {
                let list = builtin
                    .iter()
                    .map(|(v, l)| Choice {
                        value: v.to_string(),
                        label: l.to_string(),
                    })
                    .collect();
                choices.insert(q, list);
            }
        }
        for (q, list) in configured {
            if let Some(builtin) = q.builtin_choices() {
                let names: Vec<_> = builtin.iter().map(|(v, _)| *v).collect();
                return Err(FormError::BuiltinChoices(q.key(), names.join(", ")));
            }
            if !matches!(q.kind(), Kind::Choice | Kind::MultiChoice) {
                return Err(FormError::NotAChoice(q.key()));
            }
            let mut values = std::collections::HashSet::new();
            for c in &list {
                if c.value.trim().is_empty()
                    || c.value.contains(',')
                    || c.value.chars().any(char::is_control)
                {
                    return Err(FormError::BadChoice(q.key(), c.value.clone()));
                }
                if !values.insert(c.value.to_lowercase()) {
                    return Err(FormError::DuplicateChoice(q.key(), c.value.clone()));
                }
            }
            choices.insert(q, list);
        }
        for step in &steps {
            for q in step {
                let needs = matches!(q.kind(), Kind::Choice | Kind::MultiChoice);
                if needs && choices.get(q).is_none_or(|c| c.is_empty()) {
                    return Err(FormError::NoChoices(q.key()));
                }
            }
        }
        let version = version.unwrap_or_else(|| fingerprint(&steps, &choices));
        Ok(Form {
            version,
            steps,
            choices,
        })
    }

    /// The version recorded with each consent: configured, or a fingerprint of the questions
    /// and choices so that every opt-in says which form it came from.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The steps, first (the opt-in form) to last.
    pub fn steps(&self) -> &[Vec<Question>] {
        &self.steps
    }

    /// Every question of every step, in order (what "answered every step" counts).
    pub fn questions(&self) -> Vec<Question> {
        self.steps.iter().flatten().copied().collect()
    }

    /// The accepted values of a choice question (empty for other questions).
    pub fn choices(&self, q: Question) -> &[Choice] {
        self.choices.get(&q).map(Vec::as_slice).unwrap_or_default()
    }

    /// The first step that still has an unanswered question, if any.
    pub fn next_step(&self, answers: &Answers) -> Option<usize> {
        self.steps
            .iter()
            .position(|step| step.iter().any(|q| !answers.is_answered(*q)))
    }

    /// Parses a submitted form (`application/x-www-form-urlencoded` pairs). Empty values
    /// mean "no answer given" and change nothing.
    pub fn parse(&self, pairs: &[(String, String)], purpose: Purpose) -> Submission {
        let mut sub = Submission::default();
        let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (k, v) in pairs {
            by_key.entry(k.as_str()).or_default().push(v.as_str());
        }
        let mut unknown = Vec::new();
        for (key, values) in &by_key {
            let err = |sub: &mut Submission, msg: String| {
                sub.errors.insert(key.to_string(), msg);
            };
            match *key {
                CONSENT_FIELD => {
                    sub.consent = values.iter().any(|v| {
                        matches!(
                            v.trim().to_ascii_lowercase().as_str(),
                            "on" | "yes" | "true" | "1"
                        )
                    })
                }
                HONEYPOT_FIELD => sub.honeypot = values.iter().any(|v| !v.trim().is_empty()),
                STEP_FIELD => {
                    sub.step = values.first().and_then(|v| v.trim().parse::<usize>().ok())
                }
                _ => {
                    let Some(q) = Question::from_key(key) else {
                        unknown.push(key.to_string());
                        continue;
                    };
                    if q.kind() != Kind::MultiChoice && values.len() > 1 {
                        err(&mut sub, format!("{} was sent more than once.", q.label()));
                        continue;
                    }
                    match self.parse_value(q, values) {
                        Ok(Some(Value::Text(email))) if q == Question::Email => {
                            match Email::parse(&email) {
                                Ok(e) => sub.email = Some(e),
                                Err(e) => err(&mut sub, e.to_string()),
                            }
                        }
                        Ok(Some(v)) => sub.answers.set(q, v),
                        Ok(None) => {}
                        Err(msg) => err(&mut sub, msg),
                    }
                }
            }
        }
        if !unknown.is_empty() {
            let known: Vec<_> = Question::ALL.iter().map(|q| q.key()).collect();
            sub.errors.insert(
                FORM_ERROR_KEY.to_string(),
                format!(
                    "Fields this site does not know: {}. Accepted fields: {}, {}.",
                    unknown.join(", "),
                    known.join(", "),
                    CONSENT_FIELD
                ),
            );
        }
        if purpose == Purpose::Subscribe {
            if sub.email.is_none() && !sub.errors.contains_key("email") {
                sub.errors
                    .insert("email".into(), "Please enter your email address.".into());
            }
            if !sub.consent {
                sub.errors.insert(
                    CONSENT_FIELD.into(),
                    "Please tick the box to agree to receive our emails; we cannot subscribe you without it."
                        .into(),
                );
            }
        }
        sub
    }

    fn parse_value(&self, q: Question, values: &[&str]) -> Result<Option<Value>, String> {
        let raw = values.first().copied().unwrap_or("");
        match q.kind() {
            Kind::Email => Ok(Some(Value::Text(raw.to_string()))),
            Kind::Text { max } => {
                if raw.chars().any(char::is_control) {
                    return Err(format!(
                        "{} cannot contain line breaks or invisible control characters.",
                        q.label()
                    ));
                }
                let t = raw.trim();
                if t.is_empty() {
                    return Ok(None);
                }
                if t.chars().count() > max {
                    return Err(format!("{} can be {max} characters at most.", q.label()));
                }
                Ok(Some(Value::Text(t.to_string())))
            }
            Kind::LongText { max } => {
                let t = raw.replace("\r\n", "\n");
                if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                    return Err(format!(
                        "{} cannot contain invisible control characters.",
                        q.label()
                    ));
                }
                let t = t.trim();
                if t.is_empty() {
                    return Ok(None);
                }
                let n = t.chars().count();
                if n > max {
                    return Err(format!(
                        "Please keep this to {max} characters; it has {n} now."
                    ));
                }
                Ok(Some(Value::Text(t.to_string())))
            }
            Kind::Number { min, max } => {
                let t = raw.trim();
                if t.is_empty() {
                    return Ok(None);
                }
                let hint = if min == 0 { "0 or more" } else { "1 or more" };
                let n: i64 = t.parse().map_err(|_| {
                    format!(
                        "Please enter a whole number ({hint}), like 12; \"{}\" is not one.",
                        shorten(t)
                    )
                })?;
                if n < min || n > max {
                    return Err(format!("Please enter a number from {min} to {max}."));
                }
                Ok(Some(Value::Number(n)))
            }
            Kind::Choice => {
                let t = raw.trim();
                if t.is_empty() {
                    return Ok(None);
                }
                self.find_choice(q, t).map(|v| Some(Value::Text(v)))
            }
            Kind::MultiChoice => {
                let mut out: Vec<String> = Vec::new();
                for v in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
                    let c = self.find_choice(q, v)?;
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
                Ok((!out.is_empty()).then_some(Value::List(out)))
            }
        }
    }

    fn find_choice(&self, q: Question, given: &str) -> Result<String, String> {
        self.choices(q)
            .iter()
            .find(|c| c.value.eq_ignore_ascii_case(given))
            .map(|c| c.value.clone())
            .ok_or_else(|| {
                // The values, which an import or an API call must write, with the labels the
                // form shows beside them when those say more.
                let list: Vec<_> = self
                    .choices(q)
                    .iter()
                    .map(|c| match c.label == label_for(&c.value) {
                        true => c.value.clone(),
                        false => format!("{} (\"{}\")", c.value, c.label),
                    })
                    .collect();
                format!(
                    "\"{}\" is not a choice for \"{}\"; the choices are {}.",
                    shorten(given),
                    q.label(),
                    list.join(", ")
                )
            })
    }
}

impl Default for Form {
    /// The form of the VoC programme: email, name and size first, then how they engage,
    /// then their business, then their equipment.
    fn default() -> Self {
        use Question::*;
        let list = |items: &[&str]| {
            items
                .iter()
                .map(|v| Choice {
                    value: v.to_string(),
                    label: label_for(v),
                })
                .collect::<Vec<_>>()
        };
        Form::new(
            None,
            vec![
                vec![Email, Name, Employees],
                vec![Role, Engagement],
                vec![Industry, BusinessNeed, Products],
                vec![Challenge, Pcs, Servers],
            ],
            vec![
                (Products, list(&["office", "windows", "server", "cloud"])),
                (
                    Industry,
                    list(&[
                        "retail",
                        "professional_services",
                        "manufacturing",
                        "hospitality",
                        "healthcare",
                        "other",
                    ]),
                ),
                (
                    BusinessNeed,
                    list(&[
                        "grow_sales",
                        "cut_costs",
                        "work_remotely",
                        "protect_data",
                        "other",
                    ]),
                ),
            ],
        )
        .expect("the built-in form is valid")
    }
}

/// A readable label for a configured value: `professional_services` → `Professional services`.
pub fn label_for(value: &str) -> String {
    let spaced = value.replace(['_', '-'], " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        let cut: String = s.chars().take(40).collect();
        format!("{cut}…")
    } else {
        s.to_string()
    }
}

fn fingerprint(steps: &[Vec<Question>], choices: &HashMap<Question, Vec<Choice>>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for step in steps {
        for q in step {
            h.update(q.key());
            h.update(",");
        }
        h.update(";");
    }
    let mut keys: Vec<_> = choices.keys().copied().collect();
    keys.sort();
    for q in keys {
        h.update(q.key());
        for c in &choices[&q] {
            h.update(&c.value);
            h.update(",");
        }
    }
    let digest = h.finalize();
    format!("auto-{}", &hex::encode(digest)[..10])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_a_good_opt_in() {
        let form = Form::default();
        let s = form.parse(
            &pairs(&[
                ("email", "Ann@Example.com"),
                ("name", " Ann Lee "),
                ("employees", "12"),
                ("consent", "yes"),
            ]),
            Purpose::Subscribe,
        );
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(s.email.unwrap().as_str(), "Ann@example.com");
        assert_eq!(s.answers.name.as_deref(), Some("Ann Lee"));
        assert_eq!(s.answers.employees, Some(12));
        assert!(s.consent);
    }

    #[test]
    fn reports_each_bad_field() {
        let form = Form::default();
        let s = form.parse(
            &pairs(&[
                ("email", "nope"),
                ("name", "Ann\r\nBcc: x@y.z"),
                ("employees", "many"),
                ("industry", "retial"),
                ("challenge", &"x".repeat(501)),
                ("colour", "blue"),
            ]),
            Purpose::Subscribe,
        );
        for key in [
            "email",
            "name",
            "employees",
            "industry",
            "challenge",
            "consent",
            FORM_ERROR_KEY,
        ] {
            assert!(
                s.errors.contains_key(key),
                "missing error for {key}: {:?}",
                s.errors
            );
        }
        assert!(s.errors["industry"].contains("retial"));
        assert!(s.errors[FORM_ERROR_KEY].contains("colour"));
    }

    #[test]
    fn range_and_duplicates() {
        let form = Form::default();
        let s = form.parse(
            &pairs(&[
                ("employees", "0"),
                ("pcs", "-1"),
                ("name", "a"),
                ("name", "b"),
            ]),
            Purpose::ProfileCentre,
        );
        assert!(s.errors.contains_key("employees"));
        assert!(s.errors.contains_key("pcs"));
        assert!(s.errors.contains_key("name"));
        let s = form.parse(&pairs(&[("employees", "100001")]), Purpose::ProfileCentre);
        assert!(s.errors.contains_key("employees"));
    }

    #[test]
    fn multi_choice_collects_values_case_insensitively() {
        let form = Form::default();
        let s = form.parse(
            &pairs(&[
                ("products", "Office"),
                ("products", "cloud"),
                ("products", "office"),
            ]),
            Purpose::ProfileCentre,
        );
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(
            s.answers.products,
            Some(vec!["office".to_string(), "cloud".to_string()])
        );
    }

    #[test]
    fn an_unknown_choice_names_the_values_to_write() {
        let form = Form::default();
        let s = form.parse(
            &pairs(&[("frequency", "weekly"), ("industry", "Shipping")]),
            Purpose::ProfileCentre,
        );
        assert_eq!(
            s.errors["frequency"],
            "\"weekly\" is not a choice for \"How often?\"; the choices are monthly, quarterly (\"Quarterly (fewer emails)\")."
        );
        assert!(
            s.errors["industry"].starts_with(
                "\"Shipping\" is not a choice for \"Industry\"; the choices are retail, "
            ),
            "{}",
            s.errors["industry"]
        );
    }

    #[test]
    fn next_step_follows_answers() {
        let form = Form::default();
        let mut a = Answers::default();
        assert_eq!(form.next_step(&a), Some(0));
        a.name = Some("Ann".into());
        a.employees = Some(3);
        assert_eq!(form.next_step(&a), Some(1));
    }

    #[test]
    fn rejects_bad_definitions() {
        use Question::*;
        assert!(matches!(
            Form::new(None, vec![vec![Name], vec![Name]], vec![]),
            Err(FormError::Repeated("name"))
        ));
        assert!(matches!(
            Form::new(None, vec![vec![Industry]], vec![]),
            Err(FormError::NoChoices("industry"))
        ));
        let c = vec![Choice {
            value: "x".into(),
            label: "X".into(),
        }];
        assert!(matches!(
            Form::new(None, vec![vec![Name]], vec![(Role, c.clone())]),
            Err(FormError::BuiltinChoices(..))
        ));
        assert!(matches!(
            Form::new(None, vec![vec![Name]], vec![(Pcs, c)]),
            Err(FormError::NotAChoice("pcs"))
        ));
        let f = Form::new(None, vec![vec![Name], vec![Email, Pcs]], vec![]).unwrap();
        assert_eq!(f.steps()[0], vec![Email, Name]);
        assert_eq!(f.steps()[1], vec![Pcs]);
    }
}
