//! The demo repository: generated models in nested folders beside the other JSON files a real
//! repository of models holds (an OpenAPI document, a JSON Schema, a `package.json`), so the
//! demo and the tests see what model recognition must tell apart.

use super::generator::{ModelSpec, generate_model};

/// A demo repository: models in nested folders (`*.hck.json` and plain `.json`, one with a
/// space and one under a non-ASCII folder name), a Polyglot model and a model derived from it,
/// an OpenAPI document, a JSON Schema, a `package.json` and a `README.md`. Sorted by path.
pub fn sample_repository() -> Vec<(String, Vec<u8>)> {
    let model = |seed, name: &str, target: &str, kb: usize| {
        generate_model(&ModelSpec {
            seed,
            name: name.into(),
            app_target: target.into(),
            target_bytes: kb * 1024,
            ..ModelSpec::default()
        })
    };
    let mut files = vec![
        ("README.md".to_owned(), README.as_bytes().to_vec()),
        (
            "models/customers.hck.json".to_owned(),
            model(11, "Customers", "MONGODB", 24),
        ),
        (
            "models/sales/orders.hck.json".to_owned(),
            model(12, "Orders", "PostgreSQL", 80),
        ),
        (
            "models/sales/legacy orders.json".to_owned(),
            model(13, "Legacy orders", "Oracle", 40),
        ),
        (
            "models/Kundenübersicht/kunden.hck.json".to_owned(),
            model(14, "Kundenübersicht", "DYNAMODB", 16),
        ),
        (
            "polyglot/core.hck.json".to_owned(),
            model(15, "Core domain", "Polyglot", 30),
        ),
        (
            "models/derived/dynamo-orders.hck.json".to_owned(),
            generate_model(&ModelSpec {
                seed: 16,
                name: "Orders on DynamoDB".into(),
                app_target: "DYNAMODB".into(),
                target_bytes: 24 * 1024,
                polyglot_refs: true,
                polyglot_model_path: Some("../../polyglot/core.hck.json".into()),
            }),
        ),
        ("api/openapi.json".to_owned(), pretty(&openapi_document())),
        (
            "schemas/customer.schema.json".to_owned(),
            pretty(&json_schema_document()),
        ),
        ("package.json".to_owned(), pretty(&package_json())),
    ];
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

const README: &str = "# Data models\n\nHackolade Studio models of the sales domain, published to \
the Model Hub from the default branch.\n\n- `models/`: physical models per target\n- `polyglot/`: \
the Polyglot model the others derive from\n- `api/`: the OpenAPI document generated from them\n";

fn pretty(value: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).unwrap_or_default();
    out.push(b'\n');
    out
}

fn openapi_document() -> serde_json::Value {
    serde_json::json!({
        "openapi": "3.0.3",
        "info": {"title": "Sales API", "version": "1.4.0"},
        "paths": {
            "/customers/{id}": {
                "get": {
                    "operationId": "getCustomer",
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "A customer", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Customer"}}}}}
                }
            }
        },
        "components": {"schemas": {"Customer": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}}}
    })
}

fn json_schema_document() -> serde_json::Value {
    serde_json::json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Customer",
        "type": "object",
        "properties": {"id": {"type": "string"}, "email": {"type": "string", "format": "email"}},
        "required": ["id"]
    })
}

fn package_json() -> serde_json::Value {
    serde_json::json!({
        "name": "sales-data-models",
        "version": "1.4.0",
        "private": true,
        "scripts": {"validate": "hackolade --validate models"},
        "devDependencies": {"ajv": "^8.12.0"}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_repository_has_models_and_other_json() {
        let files = sample_repository();
        let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();

        assert!(paths.contains(&"README.md"));
        assert!(paths.contains(&"api/openapi.json"));
        assert!(paths.contains(&"package.json"));
        assert!(paths.iter().any(|p| p.ends_with(".hck.json")));
        assert!(paths.iter().any(|p| p.contains(' ')));
        assert!(paths.iter().any(|p| !p.is_ascii()));
        for (path, bytes) in &files {
            if path.ends_with(".json") {
                serde_json::from_slice::<serde_json::Value>(bytes).expect(path);
            }
        }
    }
}
