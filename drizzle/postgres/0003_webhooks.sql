CREATE TABLE "settings" (
	"name" text PRIMARY KEY NOT NULL,
	"value" text NOT NULL
);
--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "webhook_url" text;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "webhook_attempts" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "webhook_status" integer;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "webhook_delivered_at" bigint;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "webhook_next_at" bigint;--> statement-breakpoint
CREATE INDEX "jobs_webhook_due" ON "jobs" USING btree ("webhook_next_at");