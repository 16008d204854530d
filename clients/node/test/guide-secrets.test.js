// The product guide's secrets sections, run in the guide's order against a real server.
//
// Each block between `guide:begin` and `guide:end` is the guide's code as written
// (guide-text.test.js holds them to it); around it, a test sets up what the block assumes,
// gives it a `console` that records, and checks what it printed and what the server holds.
// Only the import lines and the client's options differ from the guide.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Julep } from "../dist/index.js"; // the guide: import { Julep } from '@julep/sdk' ;
import { randomUUID as uuidv4 } from "node:crypto"; // the guide: import { v4 as uuidv4 } from 'uuid' ;

import { runBlock } from "./helpers/console.js";
import { startServer } from "./helpers/server.js";
import { NotFoundError, SecretNotFoundError, Strongroom, StrongroomError } from "../dist/index.js";

const RFC3339_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

describe("the guide's secrets sections", () => {
  let server;
  let julep;
  let created; // the answer to "Creating Secrets"

  before(async () => {
    server = await startServer();
    // the guide: const julep = new Julep ({ apiKey: 'your_api_key' });
    julep = new Julep({ apiKey: server.apiKey, baseURL: server.baseURL });
  });
  after(() => server?.stop());

  /** Every secret name on the server, in order. */
  const allNames = async () => {
    const names = [];
    for await (const secret of julep.secrets.listAll()) {
      names.push(secret.name);
    }
    return names;
  };

  it("Authentication: Julep is the Strongroom client", () => {
    assert.equal(Julep, Strongroom);
    assert.ok(julep instanceof Strongroom);
    assert.equal(julep.baseURL, server.baseURL);
  });

  it("Creating Secrets", async () => {
    const { value, logs, errors } = await runBlock(async (console) => {
      // guide:begin Creating Secrets
      const secret = await julep.secrets.create({
        name: 'stripe_api_key',
        value: 'sk_test_...',
        description: 'Stripe API key for payment processing',
        metadata: { environment: 'production', owner: 'payments-team' }
      });
      console.log(`Created secret: ${secret.name}`);
      // guide:end
      return secret;
    });
    assert.deepEqual(logs, ["Created secret: stripe_api_key"]);
    assert.deepEqual(errors, []);
    created = value;
    assert.equal(created.value, "ENCRYPTED", "only secrets.get returns the value");
    assert.equal(created.version, 1);
    assert.match(created.createdAt, RFC3339_UTC);
    assert.equal(created.updatedAt, created.createdAt);
    const stored = await julep.secrets.get({ name: "stripe_api_key" });
    assert.equal(stored.value, "sk_test_...");
    assert.equal(stored.description, "Stripe API key for payment processing");
    assert.deepEqual(stored.metadata, { environment: "production", owner: "payments-team" });
  });

  it("Listing Secrets: all of them, values hidden", async () => {
    await julep.secrets.create({ name: "database_url", value: "postgresql://db.internal/app" });
    const { value: secrets, logs, errors } = await runBlock(async (console) => {
      // guide:begin Listing Secrets
      // List all secrets
      const secrets = await julep.secrets.list();
      secrets.items.forEach(secret => {
        console.log(`${secret.name}: ${secret.description}`);
      });
      // guide:end
      return secrets;
    });
    assert.deepEqual(logs, [
      "database_url: null",
      "stripe_api_key: Stripe API key for payment processing",
    ]);
    assert.deepEqual(errors, []);
    assert.equal(secrets.hasMore, false);
    assert.ok(secrets.items.every((s) => s.value === "ENCRYPTED"), "a list never holds a value");
  });

  it("Listing Secrets: pagination", async () => {
    for (let i = 0; i < 12; i += 1) {
      const name = `page_secret_${String(i).padStart(2, "0")}`;
      await julep.secrets.create({ name, value: `value-${i}`, metadata: { environment: "staging" } });
    }
    const { value } = await runBlock(async () => {
      // guide:begin Listing Secrets: pagination
      // List with pagination
      const secretsPage1 = await julep.secrets.list({ limit: 10, offset: 0 });
      const secretsPage2 = await julep.secrets.list({ limit: 10, offset: 10 });
      // guide:end
      return { secretsPage1, secretsPage2 };
    });
    const { secretsPage1, secretsPage2 } = value;
    assert.equal(secretsPage1.items.length, 10);
    assert.equal(secretsPage1.hasMore, true);
    assert.deepEqual([secretsPage1.limit, secretsPage1.offset], [10, 0]);
    assert.equal(secretsPage2.items.length, 4); // 14 secrets in all
    assert.equal(secretsPage2.hasMore, false);
    const paged = [...secretsPage1.items, ...secretsPage2.items].map((s) => s.name);
    assert.deepEqual(paged, await allNames(), "the two pages are every secret, by name, once");
  });

  it("Listing Secrets: filter by one and by several metadata fields", async () => {
    await julep.secrets.create({
      name: "paypal_api_key",
      value: "pp_live_...",
      metadata: { environment: "production", owner: "billing-team" },
    });
    const { value } = await runBlock(async () => {
      // guide:begin Listing Secrets: metadata filter
      // Filter by metadata
      const productionSecrets = await julep.secrets.list({
        metadata: { environment: 'production' }
      });
      // Filter by multiple metadata fields
      const teamSecrets = await julep.secrets.list({
        metadata: {
          environment: 'production',
          owner: 'payments-team'
        }
      });
      // guide:end
      return { productionSecrets, teamSecrets };
    });
    const names = (page) => page.items.map((s) => s.name);
    assert.deepEqual(names(value.productionSecrets), ["paypal_api_key", "stripe_api_key"]);
    assert.deepEqual(names(value.teamSecrets), ["stripe_api_key"]);
  });

  it("Retrieving Secrets", async () => {
    const { value: secret, logs, errors } = await runBlock(async (console) => {
      // guide:begin Retrieving Secrets
      const secret = await julep.secrets.get({ name: 'stripe_api_key' });
      console.log(`Secret: ${secret.name}, Created: ${secret.createdAt}`);
      // Access the secret value
      console.log(`Secret value: ${secret.value}`);
      // guide:end
      return secret;
    });
    assert.deepEqual(errors, []);
    assert.deepEqual(logs, [
      `Secret: stripe_api_key, Created: ${created.createdAt}`,
      "Secret value: sk_test_...",
    ]);
    assert.match(secret.createdAt, RFC3339_UTC, "timestamps stay the server's ISO strings");
    assert.equal(secret.id, created.id);
  });

  it("Updating Secrets", async () => {
    const { value: updatedSecret, logs } = await runBlock(async (console) => {
      // guide:begin Updating Secrets
      const updatedSecret = await julep.secrets.update({
        name: 'stripe_api_key',
        value: 'sk_test_new_value...',
        description: 'Updated Stripe API key',
        metadata: {
          environment: 'production',
          owner: 'payments-team',
          rotated: '2025-05-10'
        }
      });
      console.log(`Updated secret: ${updatedSecret.name}`);
      // guide:end
      return updatedSecret;
    });
    assert.deepEqual(logs, ["Updated secret: stripe_api_key"]);
    assert.equal(updatedSecret.version, 2, "a new value is a new version");
    assert.equal(updatedSecret.value, "ENCRYPTED");
    const stored = await julep.secrets.get({ name: "stripe_api_key" });
    assert.equal(stored.value, "sk_test_new_value...");
    assert.equal(stored.description, "Updated Stripe API key");
    assert.deepEqual(stored.metadata, {
      environment: "production",
      owner: "payments-team",
      rotated: "2025-05-10",
    });
  });

  it("Partial Updates: only the fields given change", async () => {
    const { value } = await runBlock(async () => {
      // guide:begin Partial Updates
      // Update only the description
      const updatedSecret = await julep.secrets.update({
        name: 'stripe_api_key',
        description: 'New description for Stripe API key'
      });
      // Update only the metadata
      const updatedMetadata = await julep.secrets.update({
        name: 'stripe_api_key',
        metadata: { lastRotated: '2025-05-10' }
      });
      // guide:end
      return { updatedSecret, updatedMetadata };
    });
    assert.equal(value.updatedSecret.description, "New description for Stripe API key");
    assert.deepEqual(value.updatedSecret.metadata, {
      environment: "production",
      owner: "payments-team",
      rotated: "2025-05-10",
    });
    assert.equal(value.updatedMetadata.description, "New description for Stripe API key");
    assert.deepEqual(value.updatedMetadata.metadata, { lastRotated: "2025-05-10" }, "metadata is replaced whole");
    const stored = await julep.secrets.get({ name: "stripe_api_key" });
    assert.equal(stored.value, "sk_test_new_value...", "the value was left alone");
    assert.equal(stored.version, 2);
  });

  it("Deleting Secrets", async () => {
    const { logs } = await runBlock(async (console) => {
      // guide:begin Deleting Secrets
      await julep.secrets.delete({ name: 'stripe_api_key' });
      console.log('Secret deleted');
      // guide:end
    });
    assert.deepEqual(logs, ["Secret deleted"]);
    await assert.rejects(julep.secrets.get({ name: "stripe_api_key" }), (error) => {
      assert.ok(error instanceof SecretNotFoundError && error instanceof NotFoundError);
      assert.equal(error.code, "not_found");
      return true;
    });
  });

  it("Error Handling: not found, invalid name, duplicate", async () => {
    await julep.secrets.upsert({ name: "existing_secret", value: "test" }); // so the create collides
    const { logs, errors } = await runBlock(async (console) => {
      // guide:begin Error Handling
      try {
        const secret = await julep.secrets.get({ name: 'non_existent_secret' });
      } catch (error) {
        if (error.code === 'not_found') {
          console.log('Secret not found');
        } else {
          console.error('Error retrieving secret:', error);
        }
      }
      try {
        // Attempt to create a secret with an invalid name
        const secret = await julep.secrets.create({ name: 'invalid name', value: 'test' });
      } catch (error) {
        if (error.code === 'validation_error') {
          console.log(`Validation error: ${error.message}`);
        } else {
          console.error('Error creating secret:', error);
        }
      }
      try {
        // Attempt to create a duplicate secret
        const secret = await julep.secrets.create({ name: 'existing_secret', value: 'test' });
      } catch (error) {
        if (error.code === 'conflict') {
          console.log('Secret already exists');
        } else {
          console.error('Error creating secret:', error);
        }
      }
      // guide:end
    });
    assert.deepEqual(errors, [], "every error took the branch the guide expects");
    assert.equal(logs.length, 3);
    assert.equal(logs[0], "Secret not found");
    assert.match(logs[1], /^Validation error: .*name/);
    assert.equal(logs[2], "Secret already exists");
    assert.ok(!(await allNames()).includes("invalid name"));
  });

  it("Secret Rotation Example", async () => {
    // "Deleting Secrets" left it restorable, its name held against a create: purge it.
    await julep.secrets.purge({ name: "stripe_api_key" });
    await julep.secrets.create({
      name: "stripe_api_key",
      value: "sk_test_before_rotation",
      description: "Stripe API key for payment processing",
      metadata: { environment: "production", owner: "payments-team" },
    });
    const { logs, errors } = await runBlock(async (console) => {
      // guide:begin Secret Rotation Example
      /**
       * Safely rotate a secret by creating a new one and verifying it works
       * before deleting the old one.
       */
      async function rotateSecret(julep, secretName, newValue) {
        // Create a temporary secret with a random suffix
        const tempName = `${secretName}_rotation_${uuidv4().substring(0, 8)}`;

        // Create the new secret
        await julep.secrets.create({
          name: tempName,
          value: newValue,
          description: `Temporary rotation for ${secretName}`,
          metadata: { rotationDate: new Date().toISOString() }
        });

        // Here you would test that the new secret works
        // ...

        // If tests pass, update metadata on the old secret
        const oldSecret = await julep.secrets.get({ name: secretName });
        const oldMetadata = oldSecret.metadata || {};

        await julep.secrets.update({
          name: secretName,
          metadata: {
            ...oldMetadata,
            archived: 'true',
            replacedBy: tempName,
            archivedDate: new Date().toISOString()
          }
        });

        // Rename the temporary secret to the standard name
        await julep.secrets.delete({ name: secretName });
        await julep.secrets.update({
          name: tempName,
          newName: secretName,
          description: oldSecret.description,
          metadata: { lastRotated: new Date().toISOString() }
        });

        return await julep.secrets.get({ name: secretName });
      }

      // Example usage
      async function rotateStripeKey() {
        const newKey = 'sk_test_new_value_after_rotation';

        try {
          const rotatedSecret = await rotateSecret(julep, 'stripe_api_key', newKey);
          console.log(`Rotated secret: ${rotatedSecret.name}`);
        } catch (error) {
          console.error('Error rotating secret:', error);
        }
      }
      // guide:end
      await rotateStripeKey();
    });
    assert.deepEqual(errors, []);
    assert.deepEqual(logs, ["Rotated secret: stripe_api_key"]);
    const rotated = await julep.secrets.get({ name: "stripe_api_key" });
    assert.equal(rotated.value, "sk_test_new_value_after_rotation");
    assert.equal(rotated.description, "Stripe API key for payment processing");
    assert.deepEqual(Object.keys(rotated.metadata), ["lastRotated"]);
    assert.ok(!Number.isNaN(Date.parse(rotated.metadata.lastRotated)));
    const leftovers = (await allNames()).filter((name) => name.includes("_rotation_"));
    assert.deepEqual(leftovers, [], "the temporary secret was renamed, not left behind");
  });

  it("errors carry the wire's code and are StrongroomErrors", async () => {
    const error = await julep.secrets.get({ name: "non_existent_secret" }).catch((e) => e);
    assert.ok(error instanceof StrongroomError);
    assert.equal(error.status, 404);
    assert.match(error.requestId, /\S/);
  });
});
