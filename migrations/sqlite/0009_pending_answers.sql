-- Answers sent on the public form for an address rapport already knows wait here until the
-- confirmation link of that request is followed (pending_nonce binds them to it): a
-- stranger who knows someone's address cannot fill in their profile.
ALTER TABLE profiles ADD COLUMN pending_answers TEXT;
ALTER TABLE profiles ADD COLUMN pending_nonce TEXT;
