CREATE TABLE `key_reservations` (
	`id` text PRIMARY KEY NOT NULL,
	`api_key_id` text NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `key_reservations_key` ON `key_reservations` (`api_key_id`,`expires_at`);