//! The envelope sender of a sent message (VERP): `b-{delivery}-{mac}@BOUNCE_DOMAIN`, so that a
//! bounce or a complaint sent back to it names the exact delivery, even when the report
//! quotes nothing of the message. Written in lower-case hex only (mail servers may change
//! the case of a local part) and 39 characters long (RFC 5321 allows 64).

use hmac::Mac;

use super::Signer;

const PREFIX: &str = "b-";
/// Bytes of the HMAC kept (80 bits, 20 hex digits): enough that a guess never lands.
const TAG_LEN: usize = 10;
/// Keeps these MACs apart from link tokens, whose payload starts with a version byte (1).
const DOMAIN: &[u8] = b"verp";

impl Signer {
    fn verp_tag(&self, delivery: i64) -> [u8; TAG_LEN] {
        let mut mac = self.mac();
        mac.update(DOMAIN);
        mac.update(&delivery.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// The local part of the envelope sender of `delivery`'s message.
    pub fn bounce_local_part(&self, delivery: i64) -> String {
        format!(
            "{PREFIX}{delivery:x}-{}",
            hex::encode(self.verp_tag(delivery))
        )
    }

    /// The delivery a local part written by [`Signer::bounce_local_part`] names; `None` for
    /// anything else (another address, a changed digit, a foreign installation's). Case is
    /// ignored, as mail servers may change it.
    pub fn bounce_delivery(&self, local_part: &str) -> Option<i64> {
        let local = local_part.to_ascii_lowercase();
        let (id, tag) = local.strip_prefix(PREFIX)?.split_once('-')?;
        if id.is_empty() || id.len() > 16 || tag.len() != TAG_LEN * 2 {
            return None;
        }
        let delivery = i64::from_str_radix(id, 16).ok().filter(|d| *d >= 0)?;
        let given = hex::decode(tag).ok()?;
        let expected = self.verp_tag(delivery);
        bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &given[..])).then_some(delivery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_delivery_whatever_the_case_and_nothing_else() {
        let s = Signer::new(b"0123456789abcdef0123456789abcdef");
        let local = s.bounce_local_part(0x1234);
        assert!(local.starts_with("b-1234-") && local.len() <= 64, "{local}");
        assert_eq!(s.bounce_delivery(&local), Some(0x1234));
        assert_eq!(s.bounce_delivery(&local.to_uppercase()), Some(0x1234));
        assert_eq!(
            s.bounce_delivery(&s.bounce_local_part(i64::MAX)),
            Some(i64::MAX)
        );
        let other = Signer::new(b"another secret of thirty-two b..");
        assert_eq!(other.bounce_delivery(&local), None);
        // Any changed character is refused.
        for i in 0..local.len() {
            let mut b = local.clone().into_bytes();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            let changed = String::from_utf8(b).unwrap();
            assert_eq!(s.bounce_delivery(&changed), None, "{changed}");
        }
        for junk in [
            "",
            "b-",
            "b--",
            "b-1-",
            "postmaster",
            "b-zz-00",
            &"b-1-".repeat(40),
        ] {
            assert_eq!(s.bounce_delivery(junk), None, "{junk}");
        }
    }
}
