//! A database's own properties — what `pg_dump` writes only with `--create`: encoding, locale and
//! collation provider, connection limit, `ALTER DATABASE … SET` and `ALTER ROLE … IN DATABASE …
//! SET` settings, the comment and the privileges (GRANTs).
//!
//! A logical backup records them in its encrypted catalog (read over the connection the backup
//! already has, just before pg_dump runs); `restore logical --create` creates the target from
//! them under any name, since pg_restore's own `--create` can only use the archive's name.
//! Not recorded: the owner (restores run with `--no-owner`: the restoring role owns the copy, and
//! privileges the original owner held go to it), `IS_TEMPLATE` and `ALLOW_CONNECTIONS` (a
//! restored copy must stay connectable and droppable), security labels, and the grantor of a
//! GRANT (the copy's owner grants everything).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::postgres::{quote_ident, DbUrl};

/// The properties of one database, as recorded in a backup's catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseProperties {
    /// The database's name in the backup (`[[database]] name`, else its own).
    pub name: String,
    /// The server encoding (`UTF8`).
    pub encoding: String,
    /// `LC_COLLATE`.
    pub lc_collate: String,
    /// `LC_CTYPE`.
    pub lc_ctype: String,
    /// `libc`, `icu` or `builtin` (always `libc` before PostgreSQL 15).
    pub locale_provider: String,
    /// The ICU or builtin locale, when the provider is not libc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_locale: Option<String>,
    /// ICU tailoring rules (PostgreSQL 16+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icu_rules: Option<String>,
    /// The default tablespace, when not `pg_default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablespace: Option<String>,
    /// `CONNECTION LIMIT` (-1: none).
    pub connection_limit: i32,
    /// `ALTER DATABASE … SET` settings, `name=value` as the server stores them, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
    /// `ALTER ROLE … IN DATABASE … SET` settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_settings: Vec<RoleSettings>,
    /// `COMMENT ON DATABASE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The role owning the database at backup time (whose privileges go to the copy's owner).
    pub owner: String,
    /// The privileges, in the server's order; absent when they are the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Vec<DatabaseGrant>>,
}

/// The settings of one role in one database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSettings {
    /// The role.
    pub role: String,
    /// `name=value`, in order.
    pub settings: Vec<String>,
}

/// What one grantee may do on a database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseGrant {
    /// The role; absent for `PUBLIC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grantee: Option<String>,
    /// `CREATE`, `TEMPORARY`, `CONNECT` granted without grant option.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub privileges: Vec<String>,
    /// Those granted `WITH GRANT OPTION`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grantable: Vec<String>,
}

/// Reads the properties of the database `client` is connected to (`url` names it in errors).
pub async fn database_properties(
    client: &tokio_postgres::Client,
    url: &DbUrl,
) -> Result<DatabaseProperties> {
    let err = |e| url.error("reading the database properties of", e);
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(err)?
        .get(0);
    let provider = match version {
        v if v >= 170_000 => "d.datlocprovider::text, d.datlocale::text, d.daticurules::text",
        v if v >= 160_000 => "d.datlocprovider::text, d.daticulocale::text, d.daticurules::text",
        v if v >= 150_000 => "d.datlocprovider::text, d.daticulocale::text, NULL::text",
        _ => "'c'::text, NULL::text, NULL::text",
    };
    let row = client
        .query_one(
            &format!(
                "SELECT d.oid, pg_encoding_to_char(d.encoding)::text, d.datcollate::text, \
                        d.datctype::text, {provider}, \
                        CASE WHEN t.spcname <> 'pg_default' THEN t.spcname::text END, \
                        d.datconnlimit, shobj_description(d.oid, 'pg_database'), \
                        pg_get_userbyid(d.datdba)::text, d.datacl IS NULL \
                 FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace \
                 WHERE d.datname = current_database()"
            ),
            &[],
        )
        .await
        .map_err(err)?;
    let oid: u32 = row.get(0);
    let provider: String = row.get(4);
    let settings = client
        .query(
            "SELECT r.rolname::text, s.setconfig FROM pg_db_role_setting s \
             LEFT JOIN pg_roles r ON r.oid = s.setrole \
             WHERE s.setdatabase = $1 ORDER BY s.setrole <> 0, r.rolname",
            &[&oid],
        )
        .await
        .map_err(err)?;
    let mut database_settings = Vec::new();
    let mut role_settings = Vec::new();
    for row in settings {
        let role: Option<String> = row.get(0);
        let config: Vec<String> = row.get::<_, Option<Vec<String>>>(1).unwrap_or_default();
        match role {
            None => database_settings = config,
            Some(role) => role_settings.push(RoleSettings {
                role,
                settings: config,
            }),
        }
    }
    let privileges = if row.get::<_, bool>(11) {
        None
    } else {
        let rows = client
            .query(
                "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END, \
                        a.privilege_type, a.is_grantable \
                 FROM pg_database d, aclexplode(d.datacl) WITH ORDINALITY \
                      AS a(grantor, grantee, privilege_type, is_grantable, n) \
                 WHERE d.oid = $1 ORDER BY a.n",
                &[&oid],
            )
            .await
            .map_err(err)?;
        let mut grants: Vec<DatabaseGrant> = Vec::new();
        for row in rows {
            let grantee: Option<String> = row.get(0);
            let privilege: String = row.get(1);
            let index = match grants.iter().position(|g| g.grantee == grantee) {
                Some(index) => index,
                None => {
                    grants.push(DatabaseGrant {
                        grantee,
                        ..DatabaseGrant::default()
                    });
                    grants.len() - 1
                }
            };
            if row.get::<_, bool>(2) {
                grants[index].grantable.push(privilege);
            } else {
                grants[index].privileges.push(privilege);
            }
        }
        Some(grants)
    };
    Ok(DatabaseProperties {
        name: url.database(),
        encoding: row.get(1),
        lc_collate: row.get(2),
        lc_ctype: row.get(3),
        locale_provider: match provider.as_str() {
            "i" => "icu",
            "b" => "builtin",
            _ => "libc",
        }
        .to_owned(),
        provider_locale: row.get(5),
        icu_rules: row.get(6),
        tablespace: row.get(7),
        connection_limit: row.get(8),
        settings: database_settings,
        role_settings,
        comment: row.get(9),
        owner: row.get(10),
        privileges,
    })
}

/// A string literal for SQL (`'it''s'`, or `E'a\\b'` when it holds a backslash).
fn quote_literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// Settings whose value is a list of quoted names (pg_dump's `variable_is_guc_list_quote`):
/// each element must be its own literal, or `'a, b'` would become one name.
fn is_list_setting(name: &str) -> bool {
    [
        "local_preload_libraries",
        "search_path",
        "session_preload_libraries",
        "shared_preload_libraries",
        "temp_tablespaces",
        "unix_socket_directories",
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

/// Splits a list setting as the server stores it (`public, "odd ""name"""`) into its elements.
fn split_list(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut item = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                // `""` inside quotes is one quote; a lone `"` ends the element.
                if c == '"' && chars.next_if_eq(&'"').is_none() {
                    break;
                }
                item.push(c);
            }
            while chars.next_if(|c| *c != ',').is_some() {}
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                item.push(c);
            }
            item.truncate(item.trim_end().len());
        }
        items.push(item);
        if chars.next().is_none() {
            return items;
        }
    }
}

/// `SET name TO value` for one stored `name=value` setting.
fn set_clause(setting: &str) -> String {
    let (name, value) = setting.split_once('=').unwrap_or((setting, ""));
    let value = if is_list_setting(name) {
        split_list(value)
            .iter()
            .map(|v| quote_literal(v))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        quote_literal(value)
    };
    format!("SET {} TO {value}", quote_ident(name))
}

impl DatabaseProperties {
    /// `CREATE DATABASE` for a copy named `target` on a server of major version `target_major`.
    pub fn create_statement(&self, target: &str, target_major: u32) -> String {
        let mut sql = format!(
            "CREATE DATABASE {} WITH TEMPLATE = template0 ENCODING = {}",
            quote_ident(target),
            quote_literal(&self.encoding)
        );
        // Before 15 there is only libc; from 15 on, the default is template0's provider, which
        // need not be the source's: always say it.
        if target_major >= 15 {
            sql.push_str(&format!(" LOCALE_PROVIDER = {}", self.locale_provider));
        }
        sql.push_str(&format!(
            " LC_COLLATE = {} LC_CTYPE = {}",
            quote_literal(&self.lc_collate),
            quote_literal(&self.lc_ctype)
        ));
        if let Some(locale) = &self.provider_locale {
            let option = match self.locale_provider.as_str() {
                "builtin" => "BUILTIN_LOCALE",
                _ => "ICU_LOCALE",
            };
            sql.push_str(&format!(" {option} = {}", quote_literal(locale)));
        }
        if let Some(rules) = &self.icu_rules {
            sql.push_str(&format!(" ICU_RULES = {}", quote_literal(rules)));
        }
        if let Some(tablespace) = &self.tablespace {
            sql.push_str(&format!(" TABLESPACE = {}", quote_ident(tablespace)));
        }
        sql
    }

    /// What completes the copy `target` once its contents are restored: connection limit,
    /// settings, comment and, with `privileges`, role settings and GRANTs. `owner` is the copy's
    /// owner, which receives what the original owner had. Run on any database but `target`.
    pub fn completing_statements(
        &self,
        target: &str,
        owner: &str,
        privileges: bool,
    ) -> Vec<String> {
        let db = quote_ident(target);
        let mut sql = Vec::new();
        if self.connection_limit != -1 {
            sql.push(format!(
                "ALTER DATABASE {db} CONNECTION LIMIT = {}",
                self.connection_limit
            ));
        }
        for setting in &self.settings {
            sql.push(format!("ALTER DATABASE {db} {}", set_clause(setting)));
        }
        if let Some(comment) = &self.comment {
            sql.push(format!(
                "COMMENT ON DATABASE {db} IS {}",
                quote_literal(comment)
            ));
        }
        if !privileges {
            return sql;
        }
        for role in &self.role_settings {
            for setting in &role.settings {
                sql.push(format!(
                    "ALTER ROLE {} IN DATABASE {db} {}",
                    quote_ident(&role.role),
                    set_clause(setting)
                ));
            }
        }
        if let Some(grants) = &self.privileges {
            // From the defaults (PUBLIC: CONNECT, TEMPORARY; the owner: all) to nothing, then
            // every grant in the original order, so the copy's list reads like the original's.
            let owner = quote_ident(owner);
            sql.push(format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"));
            sql.push(format!("REVOKE ALL ON DATABASE {db} FROM {owner}"));
            for grant in grants {
                let grantee = match &grant.grantee {
                    None => "PUBLIC".to_owned(),
                    Some(role) if *role == self.owner => owner.clone(),
                    Some(role) => quote_ident(role),
                };
                if !grant.privileges.is_empty() {
                    sql.push(format!(
                        "GRANT {} ON DATABASE {db} TO {grantee}",
                        grant.privileges.join(", ")
                    ));
                }
                if !grant.grantable.is_empty() {
                    sql.push(format!(
                        "GRANT {} ON DATABASE {db} TO {grantee} WITH GRANT OPTION",
                        grant.grantable.join(", ")
                    ));
                }
            }
        }
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_settings_keep_their_elements_apart() {
        assert_eq!(
            split_list(r#"public, "odd ""name""",  x "#),
            ["public", r#"odd "name""#, "x"]
        );
        assert_eq!(split_list(r#""""#), [""]);
        assert_eq!(
            set_clause(r#"search_path=app, "my schema""#),
            r#"SET "search_path" TO 'app', 'my schema'"#
        );
        assert_eq!(set_clause("work_mem=7MB"), r#"SET "work_mem" TO '7MB'"#);
        assert_eq!(
            set_clause(r"app.note=it's a\b"),
            r#"SET "app.note" TO E'it''s a\\b'"#
        );
    }

    #[test]
    fn the_copy_gets_the_privileges_of_the_original_with_its_own_owner() {
        let props = DatabaseProperties {
            name: "shop".to_owned(),
            owner: "alice".to_owned(),
            connection_limit: -1,
            privileges: Some(vec![
                DatabaseGrant {
                    grantee: None,
                    privileges: vec!["TEMPORARY".to_owned()],
                    grantable: vec![],
                },
                DatabaseGrant {
                    grantee: Some("alice".to_owned()),
                    privileges: vec![],
                    grantable: vec!["CREATE".to_owned(), "CONNECT".to_owned()],
                },
                DatabaseGrant {
                    grantee: Some("app".to_owned()),
                    privileges: vec!["CONNECT".to_owned()],
                    grantable: vec![],
                },
            ]),
            ..DatabaseProperties::default()
        };
        assert_eq!(
            props.completing_statements("copy", "restorer", true),
            [
                r#"REVOKE ALL ON DATABASE "copy" FROM PUBLIC"#,
                r#"REVOKE ALL ON DATABASE "copy" FROM "restorer""#,
                r#"GRANT TEMPORARY ON DATABASE "copy" TO PUBLIC"#,
                r#"GRANT CREATE, CONNECT ON DATABASE "copy" TO "restorer" WITH GRANT OPTION"#,
                r#"GRANT CONNECT ON DATABASE "copy" TO "app""#,
            ]
        );
        assert!(props
            .completing_statements("copy", "restorer", false)
            .is_empty());
    }
}
