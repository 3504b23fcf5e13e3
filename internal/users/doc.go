// Package users keeps the console's user accounts and signed-in browser
// sessions in the registry database (SQLite or PostgreSQL).
//
// A user belongs to one organization with a role (admin, operator, viewer,
// as API tokens do) and signs in to the web console with a name and a
// password. Passwords are stored as bcrypt hashes. Sessions are stored so
// that a hub restart does not sign every browser out; a session row holds
// only the SHA-256 of the cookie value, and the API token of a token
// sign-in is encrypted with a key derived from the cookie value, so the
// database alone reveals neither.
package users
