CREATE TABLE "jobs" (
	"seq" bigserial PRIMARY KEY NOT NULL,
	"id" text NOT NULL,
	"status" text NOT NULL,
	"priority" integer DEFAULT 0 NOT NULL,
	"idempotency_key" text,
	"language" text,
	"task" text NOT NULL,
	"timestamps" boolean NOT NULL,
	"filename" text NOT NULL,
	"bytes" bigint NOT NULL,
	"duration_seconds" double precision NOT NULL,
	"format" text DEFAULT 'wav' NOT NULL,
	"sample_rate" integer DEFAULT 16000 NOT NULL,
	"channels" integer DEFAULT 1 NOT NULL,
	"blob_key" text NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"max_attempts" integer NOT NULL,
	"progress" double precision DEFAULT 0 NOT NULL,
	"run_after" bigint NOT NULL,
	"lease_token" integer DEFAULT 0 NOT NULL,
	"lease_expires_at" bigint,
	"worker_id" text,
	"result" jsonb,
	"error_code" text,
	"error_message" text,
	"created_at" bigint NOT NULL,
	"started_at" bigint,
	"finished_at" bigint,
	"updated_at" bigint NOT NULL,
	CONSTRAINT "jobs_id_unique" UNIQUE("id"),
	CONSTRAINT "jobs_idempotency_key_unique" UNIQUE("idempotency_key")
);
--> statement-breakpoint
CREATE TABLE "workers" (
	"id" text PRIMARY KEY NOT NULL,
	"pool" text NOT NULL,
	"provider" text,
	"host" text,
	"last_seen_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE INDEX "jobs_claim_order" ON "jobs" USING btree ("status","priority" DESC NULLS LAST,"seq");--> statement-breakpoint
CREATE INDEX "jobs_lease_expiry" ON "jobs" USING btree ("status","lease_expires_at");--> statement-breakpoint
CREATE INDEX "jobs_blob_key" ON "jobs" USING btree ("blob_key");