CREATE TABLE "api_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"tenant" text NOT NULL,
	"role" text NOT NULL,
	"hash" text NOT NULL,
	"prefix" text NOT NULL,
	"created_at" bigint NOT NULL,
	"revoked_at" bigint,
	"last_used_at" bigint,
	CONSTRAINT "api_keys_name_unique" UNIQUE("name"),
	CONSTRAINT "api_keys_hash_unique" UNIQUE("hash")
);
--> statement-breakpoint
ALTER TABLE "jobs" DROP CONSTRAINT "jobs_idempotency_key_unique";--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "tenant" text DEFAULT 'default' NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "api_key_id" text;--> statement-breakpoint
CREATE UNIQUE INDEX "jobs_tenant_idempotency_key" ON "jobs" USING btree ("tenant","idempotency_key");--> statement-breakpoint
CREATE INDEX "jobs_tenant_seq" ON "jobs" USING btree ("tenant","seq");--> statement-breakpoint
CREATE INDEX "jobs_key_created" ON "jobs" USING btree ("api_key_id","created_at");