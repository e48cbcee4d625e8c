//! Template helpers for marketers: `in_segment "name"`, `default value "fallback"`,
//! `upper`, `lower`. (`eq`, `ne`, `and`, `or`, `not`, `len`, `lookup` are Handlebars'.)

use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason,
};
use serde_json::Value;

/// Registers rapport's helpers on a registry.
pub fn register(hbs: &mut Handlebars<'static>) {
    hbs.register_helper("in_segment", Box::new(in_segment));
    hbs.register_helper("default", Box::new(default));
    hbs.register_helper(
        "upper",
        Box::new(
            |h: &Helper,
             hbs: &Handlebars,
             _: &Context,
             _: &mut RenderContext,
             out: &mut dyn Output|
             -> HelperResult {
                // Escaped like `{{value}}`: the value is the recipient's own text.
                out.write(&hbs.get_escape_fn()(&text_param(h).to_uppercase()))?;
                Ok(())
            },
        ),
    );
    hbs.register_helper(
        "lower",
        Box::new(
            |h: &Helper,
             hbs: &Handlebars,
             _: &Context,
             _: &mut RenderContext,
             out: &mut dyn Output|
             -> HelperResult {
                // Escaped like `{{value}}`: the value is the recipient's own text.
                out.write(&hbs.get_escape_fn()(&text_param(h).to_lowercase()))?;
                Ok(())
            },
        ),
    );
}

fn text_param(h: &Helper) -> String {
    match h.param(0).map(|p| p.value()) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// `{{#if (in_segment "small-learners")}}`: whether the recipient is in the segment. An
/// unknown segment name is an error, never a silent "no".
fn in_segment(
    h: &Helper,
    _: &Handlebars,
    ctx: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let name = h.param(0).and_then(|p| p.value().as_str()).ok_or_else(|| {
        RenderErrorReason::Other(
            "in_segment needs a segment name in quotes: (in_segment \"learners\")".into(),
        )
    })?;
    let segments = ctx.data().get("segments").and_then(Value::as_object);
    let Some(member) = segments.and_then(|s| s.get(name)) else {
        let known: Vec<&str> = segments
            .map(|s| s.keys().map(String::as_str).collect())
            .unwrap_or_default();
        return Err(RenderErrorReason::Other(format!(
            "in_segment: unknown segment \"{name}\"; known: {}",
            known.join(", ")
        ))
        .into());
    };
    if member.as_bool() == Some(true) {
        out.write("true")?;
    }
    Ok(())
}

/// `{{default first_name "there"}}`: the value, or the fallback when it is empty or null.
fn default(
    h: &Helper,
    hbs: &Handlebars,
    _: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let value = text_param(h);
    let text = if value.is_empty() {
        h.param(1)
            .and_then(|p| p.value().as_str())
            .unwrap_or("")
            .to_string()
    } else {
        value
    };
    out.write(&hbs.get_escape_fn()(&text))?;
    Ok(())
}
