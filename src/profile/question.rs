//! The built-in questions of the opt-in form and the answers a profile holds.

use serde::Serialize;

/// One question of the progressive-profiling form (docs/contract.md, "The profile"). The key is
/// the form-field name, the column name and the name segment rules use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Question {
    Email,
    Name,
    Role,
    Products,
    Employees,
    Industry,
    BusinessNeed,
    Challenge,
    Pcs,
    Servers,
    Engagement,
    /// The library topics the person wants to hear about (`[topics]`).
    Topics,
    /// How often they want the newsletter: `monthly` or `quarterly`.
    Frequency,
}

/// How a question is asked and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Email,
    /// One line of text, `1..=max` characters, no control characters.
    Text {
        max: usize,
    },
    /// Several lines of text up to `max` characters.
    LongText {
        max: usize,
    },
    /// A whole number in `min..=max`.
    Number {
        min: i64,
        max: i64,
    },
    /// One value from a list.
    Choice,
    /// Any number of values from a list.
    MultiChoice,
}

/// Built-in choices for `role`; they are part of the product, not of the configuration.
pub const ROLES: &[(&str, &str)] = &[
    ("owner", "Owner"),
    ("sales", "Sales"),
    ("marketing", "Marketing"),
    ("finance", "Finance"),
    ("it", "IT"),
    ("operations", "Operations"),
    ("other", "Other"),
];

/// Built-in choices for `frequency`: how often a reader wants the newsletter. A `quarterly`
/// reader is skipped by a newsletter run less than [`QUARTERLY_GAP_DAYS`] after their last.
pub const FREQUENCIES: &[(&str, &str)] = &[
    ("monthly", "Monthly"),
    ("quarterly", "Quarterly (fewer emails)"),
];

/// Days a `quarterly` reader goes without a newsletter after one was sent to them.
pub const QUARTERLY_GAP_DAYS: i64 = 80;

/// Built-in choices for `engagement`: the three ways to engage from the VoC programme.
pub const ENGAGEMENTS: &[(&str, &str)] = &[
    ("learner", "Learner: training and how-to guides"),
    ("connector", "Connector: peers and community"),
    ("collaborator", "Collaborator: experts, forums and sharing"),
];

impl Question {
    /// Every question, in the table's order.
    pub const ALL: [Question; 13] = [
        Question::Email,
        Question::Name,
        Question::Role,
        Question::Products,
        Question::Employees,
        Question::Industry,
        Question::BusinessNeed,
        Question::Challenge,
        Question::Pcs,
        Question::Servers,
        Question::Engagement,
        Question::Topics,
        Question::Frequency,
    ];

    /// The field name used in forms, the database and segment rules.
    pub fn key(self) -> &'static str {
        match self {
            Question::Email => "email",
            Question::Name => "name",
            Question::Role => "role",
            Question::Products => "products",
            Question::Employees => "employees",
            Question::Industry => "industry",
            Question::BusinessNeed => "business_need",
            Question::Challenge => "challenge",
            Question::Pcs => "pcs",
            Question::Servers => "servers",
            Question::Engagement => "engagement",
            Question::Topics => "topics",
            Question::Frequency => "frequency",
        }
    }

    /// Looks a question up by its field name.
    pub fn from_key(key: &str) -> Option<Question> {
        Question::ALL.into_iter().find(|q| q.key() == key)
    }

    /// The question as the form asks it.
    pub fn label(self) -> &'static str {
        match self {
            Question::Email => "Email",
            Question::Name => "Name",
            Question::Role => "Primary role in the company",
            Question::Products => "Which of our products do you use or own?",
            Question::Employees => "Number of employees",
            Question::Industry => "Industry",
            Question::BusinessNeed => "Primary business need",
            Question::Challenge => "Biggest challenge facing your organisation today",
            Question::Pcs => "Number of PCs",
            Question::Servers => "Number of servers",
            Question::Engagement => "How do you prefer to engage?",
            Question::Topics => "What would you like to hear about?",
            Question::Frequency => "How often?",
        }
    }

    /// How the question is asked and checked.
    pub fn kind(self) -> Kind {
        match self {
            Question::Email => Kind::Email,
            Question::Name => Kind::Text { max: 100 },
            Question::Role
            | Question::Industry
            | Question::BusinessNeed
            | Question::Engagement
            | Question::Frequency => Kind::Choice,
            Question::Products | Question::Topics => Kind::MultiChoice,
            Question::Employees => Kind::Number {
                min: 1,
                max: 100_000,
            },
            Question::Challenge => Kind::LongText { max: 500 },
            Question::Pcs | Question::Servers => Kind::Number {
                min: 0,
                max: 10_000_000,
            },
        }
    }

    /// Choices fixed by the product (role, engagement); `None` where the configuration
    /// supplies them or the question is not a choice.
    pub fn builtin_choices(self) -> Option<&'static [(&'static str, &'static str)]> {
        match self {
            Question::Role => Some(ROLES),
            Question::Engagement => Some(ENGAGEMENTS),
            Question::Frequency => Some(FREQUENCIES),
            _ => None,
        }
    }
}

/// What a person has told us; `None` means "not answered yet".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Answers {
    pub name: Option<String>,
    pub role: Option<String>,
    pub products: Option<Vec<String>>,
    pub employees: Option<i64>,
    pub industry: Option<String>,
    pub business_need: Option<String>,
    pub challenge: Option<String>,
    pub pcs: Option<i64>,
    pub servers: Option<i64>,
    pub engagement: Option<String>,
    /// Keys of `[topics]`.
    pub topics: Option<Vec<String>>,
    /// `monthly` or `quarterly`; unanswered reads as monthly.
    pub frequency: Option<String>,
}

/// One answer, typed; used to set an answer by question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Number(i64),
    List(Vec<String>),
}

impl Answers {
    /// Whether the question has an answer (`email` always has one).
    pub fn is_answered(&self, q: Question) -> bool {
        match q {
            Question::Email => true,
            Question::Name => self.name.is_some(),
            Question::Role => self.role.is_some(),
            Question::Products => self.products.as_ref().is_some_and(|p| !p.is_empty()),
            Question::Employees => self.employees.is_some(),
            Question::Industry => self.industry.is_some(),
            Question::BusinessNeed => self.business_need.is_some(),
            Question::Challenge => self.challenge.is_some(),
            Question::Pcs => self.pcs.is_some(),
            Question::Servers => self.servers.is_some(),
            Question::Engagement => self.engagement.is_some(),
            Question::Topics => self.topics.as_ref().is_some_and(|t| !t.is_empty()),
            Question::Frequency => self.frequency.is_some(),
        }
    }

    /// Sets one answer. Values of the wrong shape for the question are ignored; the form
    /// parser only produces the right shape.
    pub fn set(&mut self, q: Question, v: Value) {
        match (q, v) {
            (Question::Name, Value::Text(s)) => self.name = Some(s),
            (Question::Role, Value::Text(s)) => self.role = Some(s),
            (Question::Industry, Value::Text(s)) => self.industry = Some(s),
            (Question::BusinessNeed, Value::Text(s)) => self.business_need = Some(s),
            (Question::Challenge, Value::Text(s)) => self.challenge = Some(s),
            (Question::Engagement, Value::Text(s)) => self.engagement = Some(s),
            (Question::Frequency, Value::Text(s)) => self.frequency = Some(s),
            (Question::Products, Value::List(l)) => self.products = Some(l),
            (Question::Topics, Value::List(l)) => self.topics = Some(l),
            (Question::Employees, Value::Number(n)) => self.employees = Some(n),
            (Question::Pcs, Value::Number(n)) => self.pcs = Some(n),
            (Question::Servers, Value::Number(n)) => self.servers = Some(n),
            _ => {}
        }
    }

    /// The answer as text, for filling form fields back in (multi-choice: each value).
    pub fn values(&self, q: Question) -> Vec<String> {
        let one = |s: &Option<String>| s.iter().cloned().collect();
        let num = |n: &Option<i64>| n.iter().map(|n| n.to_string()).collect();
        match q {
            Question::Email => Vec::new(),
            Question::Name => one(&self.name),
            Question::Role => one(&self.role),
            Question::Products => self.products.clone().unwrap_or_default(),
            Question::Employees => num(&self.employees),
            Question::Industry => one(&self.industry),
            Question::BusinessNeed => one(&self.business_need),
            Question::Challenge => one(&self.challenge),
            Question::Pcs => num(&self.pcs),
            Question::Servers => num(&self.servers),
            Question::Engagement => one(&self.engagement),
            Question::Topics => self.topics.clone().unwrap_or_default(),
            Question::Frequency => one(&self.frequency),
        }
    }

    /// Overwrites every answer that `newer` has; keeps the rest.
    pub fn update_from(&mut self, newer: &Answers) {
        macro_rules! take {
            ($($f:ident),*) => { $( if newer.$f.is_some() { self.$f = newer.$f.clone(); } )* };
        }
        take!(
            name,
            role,
            products,
            employees,
            industry,
            business_need,
            challenge,
            pcs,
            servers,
            engagement,
            topics,
            frequency
        );
    }

    /// The answers by question key, unanswered ones `null`: what the API and the personal
    /// data export show.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name, "role": self.role, "products": self.products,
            "employees": self.employees, "industry": self.industry,
            "business_need": self.business_need, "challenge": self.challenge,
            "pcs": self.pcs, "servers": self.servers, "engagement": self.engagement,
            "topics": self.topics, "frequency": self.frequency,
        })
    }

    /// Whether the person asked for fewer emails (`frequency = quarterly`).
    pub fn quarterly(&self) -> bool {
        self.frequency.as_deref() == Some("quarterly")
    }

    /// The first word of the name, for greetings; empty when no name is known.
    pub fn first_name(&self) -> &str {
        self.name
            .as_deref()
            .and_then(|n| n.split_whitespace().next())
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for q in Question::ALL {
            assert_eq!(Question::from_key(q.key()), Some(q));
        }
        assert_eq!(Question::from_key("nope"), None);
    }

    #[test]
    fn update_keeps_what_newer_lacks() {
        let mut a = Answers {
            name: Some("Ann Lee".into()),
            employees: Some(12),
            ..Answers::default()
        };
        let newer = Answers {
            employees: Some(15),
            role: Some("owner".into()),
            ..Answers::default()
        };
        a.update_from(&newer);
        assert_eq!(a.name.as_deref(), Some("Ann Lee"));
        assert_eq!(a.employees, Some(15));
        assert_eq!(a.role.as_deref(), Some("owner"));
        assert_eq!(a.first_name(), "Ann");
    }
}
