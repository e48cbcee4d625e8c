//! Personalised renders per second on one core: the example newsletter with all three
//! sections selected, every link through a signing link seam (as tracking will), CSS
//! inlined and the text part derived. Run: `cargo bench --bench render`.

mod common;

use std::time::Instant;

use rapport::profile::{Answers, Email, Profile, Status};
use rapport::render::LinkSeam;
use rapport::segment::{Behaviour, Facts};
use rapport::site::Site;
use rapport::track::{Purpose, Signer, personal_links};

/// Clicked everything: puts the person in every behaviour-based segment.
struct Everything;
impl Facts for Everything {
    fn has(&self, _: &Behaviour) -> bool {
        true
    }
}

/// Signs a click token per link, like the tracking seam does.
struct Signing<'a>(&'a Signer, i64);
impl LinkSeam for Signing<'_> {
    fn track(&mut self, _url: &str, _tag: Option<&str>) -> String {
        self.1 += 1;
        format!(
            "https://news.example.com/c/{}",
            self.0.sign(Purpose::Click, self.1, None, "")
        )
    }
}

fn main() {
    let n: usize = common::knob("RENDERS", 20_000);
    let site = Site::load(common::root()).expect("example loads");
    let campaign = site.campaign("newsletter").unwrap();
    let signer = Signer::new(b"bench secret bench secret bench!");
    let mut profile = Profile {
        id: 1,
        email: Email::parse("ann@shop.example").unwrap(),
        status: Status::Subscribed,
        answers: Answers {
            name: Some("Ann Lee".into()),
            employees: Some(12),
            engagement: Some("learner".into()),
            ..Answers::default()
        },
        confirm_nonce: None,
        pending_nonce: None,
        created_at: 0,
        updated_at: 0,
    };
    let mut seam = Signing(&signer, 0);
    let mut bytes = 0usize;
    let t = Instant::now();
    for i in 0..n {
        profile.id = i as i64 + 1;
        profile.answers.name = Some(format!("Ann{i} Lee"));
        let links = personal_links(
            &signer,
            "https://news.example.com",
            "hello@contoso.example",
            profile.id,
            rapport::track::Origin::Campaign("newsletter"),
        );
        let person = site.personalise(campaign, &profile, &Everything, links, 1_800_000_000, &[]);
        assert_eq!(person.sections.len(), 3);
        let r = site
            .templates
            .render_campaign(campaign, &site.project.sender, &person, &mut seam)
            .unwrap();
        bytes += r.html.len() + r.text.len();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{n} newsletter renders (3 sections, tracked links, CSS inlined, text part) in {secs:.2} s: {:.0} renders/s on one core ({} bytes each)",
        n as f64 / secs,
        bytes / n
    );
}
