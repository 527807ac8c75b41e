CREATE TABLE `job_counts` (
	`status` text NOT NULL,
	`shard` integer NOT NULL,
	`n` integer NOT NULL,
	PRIMARY KEY(`status`, `shard`)
);
--> statement-breakpoint
-- Written by hand (drizzle-kit does not generate triggers): job_counts follows every job that enters or leaves a finished status.
INSERT INTO `job_counts` (`status`, `shard`, `n`) SELECT `status`, 0, count(*) FROM `jobs` WHERE `status` IN ('DONE', 'FAILED', 'CANCELLED') GROUP BY `status`;
--> statement-breakpoint
CREATE TRIGGER `jobs_count_insert` AFTER INSERT ON `jobs` WHEN NEW.`status` IN ('DONE', 'FAILED', 'CANCELLED') BEGIN
  INSERT INTO `job_counts` (`status`, `shard`, `n`) VALUES (NEW.`status`, 0, 1) ON CONFLICT (`status`, `shard`) DO UPDATE SET `n` = `n` + 1;
END;
--> statement-breakpoint
CREATE TRIGGER `jobs_count_leave` AFTER UPDATE OF `status` ON `jobs` WHEN OLD.`status` IS NOT NEW.`status` AND OLD.`status` IN ('DONE', 'FAILED', 'CANCELLED') BEGIN
  UPDATE `job_counts` SET `n` = `n` - 1 WHERE `status` = OLD.`status` AND `shard` = 0;
END;
--> statement-breakpoint
CREATE TRIGGER `jobs_count_enter` AFTER UPDATE OF `status` ON `jobs` WHEN OLD.`status` IS NOT NEW.`status` AND NEW.`status` IN ('DONE', 'FAILED', 'CANCELLED') BEGIN
  INSERT INTO `job_counts` (`status`, `shard`, `n`) VALUES (NEW.`status`, 0, 1) ON CONFLICT (`status`, `shard`) DO UPDATE SET `n` = `n` + 1;
END;
--> statement-breakpoint
CREATE TRIGGER `jobs_count_delete` AFTER DELETE ON `jobs` WHEN OLD.`status` IN ('DONE', 'FAILED', 'CANCELLED') BEGIN
  UPDATE `job_counts` SET `n` = `n` - 1 WHERE `status` = OLD.`status` AND `shard` = 0;
END;
