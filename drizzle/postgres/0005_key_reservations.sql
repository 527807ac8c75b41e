CREATE TABLE "key_reservations" (
	"id" text PRIMARY KEY NOT NULL,
	"api_key_id" text NOT NULL,
	"created_at" bigint NOT NULL,
	"expires_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE INDEX "key_reservations_key" ON "key_reservations" USING btree ("api_key_id","expires_at");